"""The instant recall in a live call's session (call/recall.py through operator_leg.py), on a
real Stasis and CallSession with a fake ARI: *6 plays the recording's tail on the operator's
leg, # stops it, the API's commands do the same, and what cannot be done is refused by name
without touching the call."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest
from tests.fakes import FakeAri, ListSink
from tests.unit.test_call_commands import CALL, OP_LEG, a_call, settle
from tests.unit.test_recall_supervision import live_wav

from siaga112.ari.models import Channel, ChannelDtmfReceived, Playback, PlaybackFinished
from siaga112.call.errors import CallNotConnected
from siaga112.call.items import CommandKind, CommandResult
from siaga112.call.recall import NoRecording, NotRecalling
from siaga112.model import CallState
from siaga112.stasis import Stasis

MEDIA = f"sound:/var/spool/asterisk/monitor/siaga112/recall/{CALL}"


async def recorded_call(tmp_path: Path, seconds: int = 5) -> tuple[Stasis, FakeAri, ListSink]:
    stasis, ari, sink = await a_call(connected=True)
    stasis.sessions[CALL].deps.settings.recording.dir = tmp_path
    (tmp_path / f"{CALL}.wav").write_bytes(live_wav(b"\x10\x00" * 8000 * seconds))
    return stasis, ari, sink


async def keys(stasis: Stasis, digits: str, ari: FakeAri | None = None) -> None:
    """The operator presses digits; with ari, until the PBX is asked to play (the copy is cut
    in a worker thread)."""
    for digit in digits:
        stasis.on_event(ChannelDtmfReceived(type="ChannelDtmfReceived", digit=digit,
                                            channel=Channel(id=OP_LEG)))
    await settle()
    for _ in range(200):
        if ari is None or ari.called("play"):
            return
        await asyncio.sleep(0.01)


async def test_star6_plays_the_tail_to_the_operator_and_hash_returns(tmp_path: Path) -> None:
    stasis, ari, sink = await recorded_call(tmp_path, seconds=40)
    await keys(stasis, "*6", ari)
    assert ari.called("play") == [("play", OP_LEG, MEDIA)]
    with wave.open(str(tmp_path / "recall" / f"{CALL}.wav")) as w:
        assert w.getnframes() == 30 * 8000  # the last 30 s of 40
    (recall,) = [e for e in sink.calls if e.type.value == "recall"]
    assert recall.data == {"operator": "op1", "by": "op1", "seconds": 30.0}

    await keys(stasis, "#")
    assert ari.called("stop_playback") == [("stop_playback", f"{CALL}-recall-1")]
    copy = tmp_path / "recall" / f"{CALL}.wav"
    for _ in range(200):  # deleted in a worker thread
        if not copy.exists():
            break
        await asyncio.sleep(0.01)
    assert not copy.exists()  # the copy is gone with the recall
    assert sink.types()[-1] == "recall_returned"
    assert sink.calls[-1].data == {"operator": "op1", "by": "op1", "reason": "returned"}
    await keys(stasis, "#")  # outside a recall: an ordinary key
    assert len(ari.called("stop_playback")) == 1
    assert stasis.sessions[CALL].state is CallState.CONNECTED


async def test_the_api_recalls_and_a_recall_that_plays_out_ends_by_itself(
        tmp_path: Path) -> None:
    stasis, ari, sink = await recorded_call(tmp_path)
    assert await stasis.command(CALL, CommandKind.RECALL, "", "desk 1") is \
        CommandResult.RECALLING
    stasis.on_event(PlaybackFinished(type="PlaybackFinished", playback=Playback(
        id=f"{CALL}-recall-1", target_uri=f"channel:{OP_LEG}")))
    await settle()
    assert sink.calls[-1].data == {"operator": "op1", "by": "system", "reason": "played"}
    with pytest.raises(NotRecalling, match="has no recall playing"):
        await stasis.command(CALL, CommandKind.RECALL_RETURN, "", "desk 1")
    assert not ari.called("stop_playback")


async def test_no_recording_is_refused_and_the_call_goes_on(tmp_path: Path) -> None:
    stasis, ari, sink = await recorded_call(tmp_path)
    (tmp_path / f"{CALL}.wav").unlink()
    with pytest.raises(NoRecording, match="no recording file"):
        await stasis.command(CALL, CommandKind.RECALL, "", "desk 1")
    (tmp_path / f"{CALL}.wav").write_bytes(b"garbage")
    await keys(stasis, "*6", ari)
    assert ari.called("play") == [("play", OP_LEG, "sound:siaga112/unknown-code")]
    assert "recall" not in sink.types()
    assert stasis.sessions[CALL].state is CallState.CONNECTED


async def test_a_call_not_connected_has_nothing_to_recall() -> None:
    stasis, ari, _ = await a_call(connected=False)
    with pytest.raises(CallNotConnected):
        await stasis.command(CALL, CommandKind.RECALL, "", "desk 1")
    assert not ari.called("play")
