"""Pure logic of the instant recall (cutting the live recording's tail) and of the supervisor
codes (*51NN listen, *52NN whisper, *53NN barge): bad input is a clear refusal, never a crash."""

from __future__ import annotations

import struct
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.fakes import FakeAri

from siaga112.ari.client import Conflict, NotFound
from siaga112.ari.models import (
    Bridge,
    Channel,
    ChannelDestroyed,
    ChannelLeftBridge,
    StasisEnd,
    StasisStart,
)
from siaga112.call.recall import PcmTail, RecordingUnreadable, cut_copy, pcm_tail
from siaga112.model import CallEventType, CallState
from siaga112.settings import Settings
from siaga112.supervision import (
    Mode,
    NotOnCall,
    Refused,
    Request,
    Supervision,
    endpoint_of,
    parse_code,
)

OPERATORS = [f"op{n}" for n in range(1, 9)]


def live_wav(samples: bytes, data_size: int = 0, rate: int = 8000) -> bytes:
    """A WAV as MixMonitor has it while recording: sizes still 0 in the header."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_size) + samples)


def test_tail_of_a_live_recording_runs_to_the_end_of_the_file() -> None:
    samples = bytes(range(256)) * 250  # 64000 bytes: 4 s of 16-bit 8 kHz mono
    tail = pcm_tail(live_wav(samples), seconds=1.5)
    assert tail == PcmTail(8000, 1, 2, samples[-24000:])
    assert tail.seconds == 1.5


def test_a_short_recording_is_played_whole_and_a_half_frame_is_left_out() -> None:
    samples = b"\x01\x02" * 800 + b"\x03"  # 0.1 s and half a frame still being written
    tail = pcm_tail(live_wav(samples), seconds=30)
    assert tail.frames == b"\x01\x02" * 800


def test_a_finished_recording_stops_at_its_data_size() -> None:
    samples = b"\x05\x00" * 8000
    data = live_wav(samples, data_size=len(samples)) + b"LIST\x04\x00\x00\x00abcd"
    assert pcm_tail(data, seconds=30).frames == samples


@pytest.mark.parametrize("data", [
    b"", b"RIFF", b"not a wav file at all", b"RIFF\x00\x00\x00\x00WAVE",
    b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00",  # data before fmt
    b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 6, 1, 8000,
                                                                 8000, 1, 8),  # A-law, no data
])
def test_what_is_not_a_pcm_wav_is_refused_by_name(data: bytes) -> None:
    with pytest.raises(RecordingUnreadable):
        pcm_tail(data, seconds=30)


def test_the_copy_is_a_wav_of_the_last_seconds(tmp_path: Path) -> None:
    source = tmp_path / "1.wav"
    source.write_bytes(live_wav(b"\x10\x00" * 8000 * 5))  # 5 s
    copy = tmp_path / "recall" / "1.wav"
    assert cut_copy(source, copy, seconds=2) == 2.0
    with wave.open(str(copy)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == 16000


def test_no_recording_yet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingUnreadable, match="no recording"):
        cut_copy(tmp_path / "missing.wav", tmp_path / "recall" / "x.wav", 30)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(live_wav(b""))
    with pytest.raises(RecordingUnreadable, match="nothing recorded"):
        cut_copy(empty, tmp_path / "recall" / "x.wav", 30)


@pytest.mark.parametrize(("code", "expected"), [
    ("*5101", Request(Mode.LISTEN, "op1")),
    ("*5205", Request(Mode.WHISPER, "op5")),
    ("*5308", Request(Mode.BARGE, "op8")),
])
def test_supervisor_codes(code: str, expected: Request) -> None:
    assert parse_code(code, OPERATORS) == expected


@pytest.mark.parametrize(("code", "why"), [
    ("*5199", "no operator 99"),
    ("*5100", "no operator 00"),
    ("*5109", "no operator 09"),
    ("*5401", r"\*54 is not a supervisor code"),
    ("*51", "not a supervisor code"),
    ("*51ab", "not a supervisor code"),
    ("*510", "not a supervisor code"),
    ("*51011", "not a supervisor code"),
    ("", "not a supervisor code"),
    ("*51\x0001", "not a supervisor code"),
    ("*5" + "1" * 5000, "not a supervisor code"),
])
def test_bad_supervisor_codes_are_refused_clearly(code: str, why: str) -> None:
    with pytest.raises(Refused, match=why) as refused:
        parse_code(code, OPERATORS)
    assert len(str(refused.value)) < 200  # a long input is not echoed back whole


def test_endpoint_of_a_channel_name() -> None:
    assert endpoint_of("PJSIP/sup1-0000001a") == "sup1"
    assert endpoint_of("garbage") == "garbage"


# -- the supervision service, on a fake ARI ---------------------------------------------------


@dataclass
class SupAri(FakeAri):
    """FakeAri with the snoop channel supervision asks for."""

    async def snoop(self, channel_id: str, snoop_id: str, app: str, app_args: str = "",
                    spy: str = "none", whisper: str = "none") -> Channel:
        self._call("snoop", channel_id, snoop_id, app, spy, whisper)
        return Channel(id=snoop_id)


@dataclass
class Call:
    """A live call as supervision sees it (call/session.py's CallSession)."""

    call_id: str = "1700000000.7"
    state: CallState = CallState.CONNECTED
    operator: str | None = "op1"
    operator_channel: str | None = "1700000000.7-op-op1-1"
    bridge_id: str = "siaga112-call-1700000000.7"
    emitted: list[tuple[CallEventType, dict[str, Any]]] = field(default_factory=list)

    def emit(self, type_: CallEventType, **data: Any) -> None:
        self.emitted.append((type_, data))


SUP = "1700000001.9"


def service(call: Call) -> tuple[Supervision, SupAri]:
    ari = SupAri()
    return Supervision(ari, Settings(), lambda: {call.call_id: call}), ari


def dialled(code: str, phone: str = "sup1", channel: str = SUP) -> StasisStart:
    return StasisStart(type="StasisStart", args=["desk", code],
                       channel=Channel(id=channel, name=f"PJSIP/{phone}-0000002a"))


async def test_listen_snoops_the_operator_and_ends_audited_when_the_phone_hangs_up() -> None:
    call = Call()
    sup, ari = service(call)
    await sup._on_event(dialled("*5101"))
    snoop = f"{SUP}-snoop"
    assert ari.called("snoop") == [("snoop", call.operator_channel, snoop,
                                    "siaga112-supervision", "both", "none")]
    assert ari.called("add_to_bridge") == [
        ("add_to_bridge", f"siaga112-sup-{SUP}", SUP),
        ("add_to_bridge", f"siaga112-sup-{SUP}", snoop)]
    ((kind, data),) = call.emitted
    assert kind is CallEventType.SUPERVISION_STARTED
    assert data == {"supervision_id": SUP, "supervisor": "sup1", "mode": "listen",
                    "operator": "op1", "by": "sup1"}
    await sup._on_event(StasisEnd(type="StasisEnd", channel=Channel(id=SUP)))
    kind, data = call.emitted[-1]
    assert kind is CallEventType.SUPERVISION_ENDED and data["reason"] == "supervisor_hung_up"
    assert ("hangup", snoop) in ari.calls and ("destroy_bridge", f"siaga112-sup-{SUP}") in \
        ari.calls
    assert not sup.active


async def test_whisper_goes_to_the_operator_only_and_ends_when_the_operator_leaves() -> None:
    call = Call()
    sup, ari = service(call)
    await sup._on_event(dialled("*5201"))
    assert ari.called("snoop")[0][-2:] == ("both", "out")
    await sup._on_event(ChannelDestroyed(type="ChannelDestroyed", cause=16,
                                         channel=Channel(id=f"{SUP}-snoop")))
    assert call.emitted[-1][1]["reason"] == "operator_left"
    assert ("hangup", SUP) in ari.calls


async def test_barge_joins_the_call_bridge() -> None:
    call = Call()
    sup, ari = service(call)
    await sup._on_event(dialled("*5301"))
    assert ari.called("add_to_bridge") == [("add_to_bridge", f"siaga112-call-{call.call_id}",
                                            SUP)]
    assert not ari.called("snoop")
    await sup._on_event(ChannelLeftBridge(
        type="ChannelLeftBridge", channel=Channel(id=SUP),
        bridge=Bridge(id=f"siaga112-call-{call.call_id}")))
    assert call.emitted[-1][1]["reason"] == "call_ended"


@pytest.mark.parametrize(("code", "phone"), [
    ("*5102", "sup1"),  # op2 is not on a call
    ("*5199", "sup1"),  # no op99
    ("*5901", "sup1"),
    ("*5101", "op3"),  # not a supervisor's phone
])
async def test_refused_codes_touch_no_call(code: str, phone: str) -> None:
    call = Call()
    sup, ari = service(call)
    with capture_logs() as logs:
        await sup._on_event(dialled(code, phone))
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", SUP, None)]
    assert not ari.called("snoop") and not ari.called("add_to_bridge") and not call.emitted
    assert [e["reason"] for e in logs if e["event"] == "supervision_refused"]


async def test_a_cluster_refuses_a_code_that_reached_another_node_than_the_call() -> None:
    """No bridge spans two nodes: the desk code is refused (the phone hears "unknown code")
    and the log says why; on the call's own node it works."""
    nodes = {"ari": {"nodes": [{"name": "node1", "url": "http://127.0.0.11:8088/ari"},
                               {"name": "node2", "url": "http://127.0.0.12:8088/ari"}]}}
    call = Call(call_id="node1-1700000000.7", operator_channel="node1-1700000000.7-op-op1-1")
    ari = SupAri()
    sup = Supervision(ari, Settings.model_validate(nodes), lambda: {call.call_id: call})
    with capture_logs() as logs:
        await sup._on_event(dialled("*5101", channel="node2-1700000001.9"))
    assert ari.called("continue_in_dialplan") and not ari.called("snoop") and not call.emitted
    [why] = [e["reason"] for e in logs if e["event"] == "supervision_refused"]
    assert "node1" in why and "node2" in why
    await sup._on_event(dialled("*5101", channel="node1-1700000001.9"))
    assert ari.called("snoop") and call.emitted


async def test_a_call_not_connected_cannot_be_supervised() -> None:
    call = Call(state=CallState.RINGING_OPERATOR)
    sup, ari = service(call)
    await sup._on_event(dialled("*5101"))
    assert not call.emitted and ari.called("continue_in_dialplan")


async def test_the_api_rings_the_supervisor_first() -> None:
    call = Call()
    sup, ari = service(call)
    with pytest.raises(Refused, match="not a supervisor's phone"):
        await sup.ring("op3", Request(Mode.LISTEN, "op1"), "night supervisor")
    with pytest.raises(NotOnCall, match="op2 is not on a call"):
        await sup.ring("sup1", Request(Mode.LISTEN, "op2"), "night supervisor")
    sid = await sup.ring("sup1", Request(Mode.BARGE, "op1"), "night supervisor")
    assert ari.called("originate") == [("originate", "PJSIP/sup1", sid)]
    await sup._on_event(StasisStart(type="StasisStart", args=["api", "barge", "op1"],
                                    channel=Channel(id=sid, name="PJSIP/sup1-0000002b")))
    assert call.emitted[-1][1] == {"supervision_id": sid, "supervisor": "sup1",
                                   "mode": "barge", "operator": "op1",
                                   "by": "night supervisor"}
    assert await sup.end(sid, "night supervisor")
    assert call.emitted[-1][1]["reason"] == "ended by night supervisor"
    assert not await sup.end(sid, "night supervisor")


@dataclass
class LateSnoopAri(SupAri):
    """The snoop enters our application only after `late` refusals to bridge it (Asterisk's
    422 "Channel not in Stasis application": a slow hour of the test VM showed it)."""

    late: int = 2

    async def add_to_bridge(self, bridge_id: str, channel_id: str | Sequence[str],
                            role: str | None = None) -> None:
        await super().add_to_bridge(bridge_id, channel_id, role)
        if channel_id == f"{SUP}-snoop" and self.late > 0:
            self.late -= 1
            raise Conflict("POST", f"/bridges/{bridge_id}/addChannel", 422,
                           "Channel not in Stasis application")


async def test_a_snoop_not_yet_in_our_application_is_asked_again_until_it_is() -> None:
    call = Call()
    ari = LateSnoopAri()
    sup = Supervision(ari, Settings(), lambda: {call.call_id: call})
    await sup._on_event(dialled("*5201"))
    snoop_joins = [c for c in ari.called("add_to_bridge") if c[2] == f"{SUP}-snoop"]
    assert len(snoop_joins) == 3  # refused twice, then in
    assert SUP in sup.active and call.emitted[0][0] is CallEventType.SUPERVISION_STARTED
    assert not ari.called("continue_in_dialplan") and ("hangup", f"{SUP}-snoop") not in ari.calls


async def test_a_snoop_that_never_joins_leaves_nothing_on_the_call_and_tells_the_phone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import siaga112.supervision as supervision

    monkeypatch.setattr(supervision, "SNOOP_JOIN_SECONDS", 0.2)
    call = Call()
    ari = LateSnoopAri(late=10_000)
    sup = Supervision(ari, Settings(), lambda: {call.call_id: call})
    await sup._on_event(dialled("*5101"))
    assert ("hangup", f"{SUP}-snoop") in ari.calls  # off the operator's leg
    assert ("destroy_bridge", f"siaga112-sup-{SUP}") in ari.calls
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", SUP, None)]  # told
    assert not sup.active and not call.emitted


async def test_a_barge_on_a_call_that_just_ended_tells_the_phone() -> None:
    call = Call()
    sup, ari = service(call)
    ari.fail["add_to_bridge"] = NotFound("POST", "/bridges/x/addChannel", 404,
                                         "Bridge not found")
    await sup._on_event(dialled("*5301"))
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", SUP, None)]
    assert not sup.active and not call.emitted
