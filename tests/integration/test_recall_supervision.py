"""Instant recall (*6, #) and supervisors' listen, whisper and barge (*51NN, *52NN, *53NN, and
the API), end to end: SIPp citizen, operator and supervisor through the real PBX. Who heard
what is read off the wire (rtp_meter.py): the audible G.711 packets the PBX sent to each
phone's address in a window of time. Each test has its own quiet control, so a meter that saw
nothing would fail it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from siaga112.model import CallEvent, CallEventType, CallState
from siaga112_testkit import dtmf_pcap
from siaga112_testkit.topology import operator_ip, supervisor_ip
from tests.conftest import wait_for
from tests.integration.phones import MOBILE, e164, logged, mobile_number
from tests.integration.rtp_meter import RtpMeter
from tests.integration.test_call_path import call_of, record
from tests.integration.test_events_api import API, OPERATOR, SUPERVISOR, Tap

pytestmark = pytest.mark.integration

CITIZEN_IP = "127.0.0.2"
ONE_SECOND = 50  # 20 ms packets
# At least this many audible packets (1 s) in a window where someone should be heard, and at
# most this many (0.2 s: a mixing bridge's edges) where nobody should.
HEARD, NOT_HEARD = ONE_SECOND, 10


def talk_then_quiet(d: Path, talk: float, quiet: float) -> Path:
    samples = dtmf_pcap.speech_samples(talk) + dtmf_pcap.silence_samples(quiet)
    return dtmf_pcap.write_pcap(d / f"talk{talk:g}_quiet{quiet:g}.pcap",
                                dtmf_pcap.audio_packets(samples))


def keys_at(d: Path, name: str, keys: list[tuple[float, str]]) -> Path:
    """One RTP stream of DTMF codes, each at its second from the start (the first at 0)."""
    packets: list[dtmf_pcap.RtpPacket] = []
    for at, code in keys:
        first = dtmf_pcap.dtmf_packets(code, first_seq=1000 + len(packets),
                                       first_timestamp=16000 + int(at * 8000))
        packets += [dataclasses.replace(p, at=p.at + at) for p in first]
    return dtmf_pcap.write_pcap(d / name, packets)


def events(detail: Any, type_: CallEventType) -> list[Any]:
    return [e for e in detail.events if e.type == type_.value]


async def live_call(daemon: Any, number: str) -> Any:
    call_id = await call_of(daemon, e164(number))
    session = daemon.stasis.sessions[call_id]
    await wait_for(lambda: session.state is CallState.CONNECTED, 15, "the call connected")
    return session


async def supervisor_talks(daemon: Any, phones: Any, meter: RtpMeter,
                           code: str) -> tuple[Any, Any, tuple[float, float]]:
    """op1 answers a silent citizen; sup1 dials `code` and talks for 4 s. The call's session,
    sup1's phone and a 2.7 s window of sup1 talking. Before sup1 dials, nobody hears a sound
    (the control)."""
    await phones.operator(1, ring=0.3, talk=None, calls=None)
    number = mobile_number()
    await phones.citizen(number, MOBILE, hold=None, audio=phones.pcaps.silence(30))
    session = await live_call(daemon, number)
    quiet = meter.now()
    await asyncio.sleep(1.0)
    for party in ("op1", "citizen"):
        assert meter.loud(party, quiet, quiet + 1.0) <= NOT_HEARD, meter.summary(quiet)
    sup = await phones.supervisor_code(1, code, hold=4.0, audio=phones.pcaps.speech(10))
    await wait_for(lambda: daemon.supervision.active, 5, "the supervision running")
    on = meter.now()
    await asyncio.sleep(3.0)
    return session, sup, (on + 0.3, on + 3.0)


@pytest.fixture
async def meter() -> AsyncIterator[RtpMeter]:
    parties = {"op1": operator_ip(1), "sup1": supervisor_ip(1), "citizen": CITIZEN_IP}
    async with RtpMeter(parties) as m:
        yield m


async def test_instant_recall_plays_the_last_seconds_to_the_operator_only(
        daemon_factory, phones, meter, tmp_path) -> None:
    """The citizen talks 8 s, then is silent. 10 s after answering, the operator presses *6:
    they hear the citizen's words again while the citizen, still on the line, hears nothing of
    it; 3 s later # brings them back to the (silent) call, before the recall has played out."""
    daemon = await daemon_factory(logged_in=["op1"])
    keys = keys_at(tmp_path, "recall.pcap", [(0.0, "*6"), (3.0, "#")])
    op1 = await phones.operator(1, ring=0.3, talk=None, dtmf=keys, dtmf_at=10.0)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=17.0,
                                   audio=talk_then_quiet(tmp_path, 8, 30))
    session = await live_call(daemon, number)
    recall = session.operator_leg.recall
    await wait_for(lambda: recall.active, 15, "the recall playing")
    started = meter.now()
    before = meter.summary(started - 2.5, started - 0.5)
    await wait_for(lambda: not recall.active, 6, "# back to the call")
    back = meter.now()
    await asyncio.sleep(2.5)
    after = meter.summary(back + 0.5, back + 2.5)
    during = meter.summary(started, back)

    # The citizen had been silent for seconds: the live call was quiet for the operator.
    assert meter.loud("op1", started - 2.5, started - 0.5) <= NOT_HEARD, before
    assert meter.received("op1", started - 2.5, started - 0.5) >= ONE_SECOND, before
    # The recall: the citizen's words again, to the operator only.
    assert meter.loud("op1", started, back) >= 2 * HEARD, during
    assert meter.loud("citizen", started, back) <= NOT_HEARD, during
    # Back in the live, quiet call; the citizen was never cut off.
    assert meter.loud("op1", back + 0.5, back + 2.5) <= NOT_HEARD, after
    assert session.state is CallState.CONNECTED
    result = await citizen.wait(10)
    assert result.ok and result.events("bye_sent"), result.explain()
    await op1.wait(5)

    detail = await record(daemon, session.call_id)
    (recalled,) = events(detail, CallEventType.RECALL)
    assert recalled.data["by"] == "op1" and recalled.data["seconds"] >= 5, recalled.data
    (returned,) = events(detail, CallEventType.RECALL_RETURNED)
    assert returned.data == {"operator": "op1", "by": "op1", "reason": "returned"}
    copy = daemon.settings.recording.dir / "recall" / f"{session.call_id}.wav"
    assert not copy.exists(), "the recall's copy is deleted when it ends"
    (ended,) = events(detail, CallEventType.ENDED)
    assert ended.data["hangup_by"] == "caller", ended.data


async def test_supervisor_listens_unheard_and_the_use_is_audited(
        daemon_factory, phones, meter, tmp_path) -> None:
    """sup1 dials *5101 while op1 talks to a citizen: sup1 hears the citizen; what sup1 says
    reaches nobody. The call's record and its MQTT events say who listened, from when to when."""
    daemon = await daemon_factory(logged_in=["op1"])
    tap = await Tap((daemon.notifier.topics.all_calls,)).open()
    try:
        await phones.operator(1, ring=0.3, talk=None, calls=None)
        number = mobile_number()
        await phones.citizen(number, MOBILE, hold=None, audio=phones.pcaps.speech(30))
        session = await live_call(daemon, number)
        sup = await phones.supervisor_code(1, "*5101", hold=4.0, audio=phones.pcaps.speech(10))
        await logged(sup, "answered", 5)
        await wait_for(lambda: daemon.supervision.active, 5, "the supervision running")
        on = meter.now()
        await wait_for(lambda: not daemon.supervision.active, 8, "sup1 hung up")
        off = meter.now()
        window = meter.summary(on + 0.3, off)
        assert meter.loud("sup1", on + 0.3, off) >= 2 * HEARD, window
        assert meter.loud("citizen", on + 0.3, off) <= NOT_HEARD, window  # sup1 unheard
        assert (await sup.wait(5)).ok
        assert session.state is CallState.CONNECTED  # the call goes on

        def audited() -> list[CallEvent]:
            return [e for e in tap.call_events(daemon.notifier.topics.all_calls,
                                               session.call_id)
                    if e.type.value.startswith("supervision")]

        published = await wait_for(lambda: len(audited()) == 2 and audited(), 5,
                                   "the supervision's events on MQTT")
    finally:
        await tap.close()
    started, ended = published
    assert started.type is CallEventType.SUPERVISION_STARTED
    assert {k: started.data[k] for k in ("supervisor", "mode", "operator", "by")} == {
        "supervisor": "sup1", "mode": "listen", "operator": "op1", "by": "sup1"}
    assert ended.type is CallEventType.SUPERVISION_ENDED
    assert ended.data["reason"] == "supervisor_hung_up" and ended.data["seconds"] > 2
    await daemon.writer.wait_idle(2)
    detail = await record(daemon, session.call_id, ended=False)
    assert [e.type for e in detail.events if e.type.startswith("supervision")] == [
        "supervision_started", "supervision_ended"]


async def test_supervisor_whispers_to_the_operator_only(daemon_factory, phones, meter) -> None:
    """*52NN: op1 hears sup1, the citizen does not. A code for an operator not on a call, or
    one that does not exist, is refused: the phone hears 'unknown code' and is hung up."""
    daemon = await daemon_factory(logged_in=["op1"])
    for refused in ("*5102", "*5199"):
        rejected = await phones.supervisor_code(1, refused, hold=8.0)
        result = await rejected.wait(10)
        assert result.ok and result.events("bye_received"), result.explain()
    assert not daemon.supervision.active

    session, sup, (on, off) = await supervisor_talks(daemon, phones, meter, "*5201")
    window = meter.summary(on, off)
    assert meter.loud("op1", on, off) >= HEARD, window
    assert meter.loud("citizen", on, off) <= NOT_HEARD, window
    assert (await sup.wait(5)).ok
    assert session.state is CallState.CONNECTED


async def test_supervisor_barges_in_and_both_hear(daemon_factory, phones, meter) -> None:
    """*53NN: sup1 joins the call; op1 and the citizen both hear sup1."""
    daemon = await daemon_factory(logged_in=["op1"])
    session, sup, (on, off) = await supervisor_talks(daemon, phones, meter, "*5301")
    window = meter.summary(on, off)
    assert meter.loud("op1", on, off) >= HEARD, window
    assert meter.loud("citizen", on, off) >= HEARD, window
    assert (await sup.wait(5)).ok
    await wait_for(lambda: not daemon.supervision.active, 5, "the barge ended")
    assert session.state is CallState.CONNECTED


async def test_recall_and_supervision_by_api(daemon_factory, phones, meter) -> None:
    """The API does what the codes do: recall and back for the operator's token; for the
    supervisor's, ring sup1 to listen, list it, end it; refusals name why."""
    daemon = await daemon_factory(logged_in=["op1"])
    await phones.operator(1, ring=0.3, talk=None, calls=None)
    number = mobile_number()
    await phones.citizen(number, MOBILE, hold=None, audio=phones.pcaps.speech(30))
    session = await live_call(daemon, number)
    call = f"/calls/{session.call_id}"
    async with aiohttp.ClientSession(API) as http:
        async with http.post(f"{call}/recall/return", headers=OPERATOR) as r:
            assert r.status == 409, await r.text()  # not recalling
        # MixMonitor writes in 32 kB blocks (2 s of audio): wait for the first.
        recording = daemon.settings.recording.dir / f"{session.call_id}.wav"
        await wait_for(lambda: recording.stat().st_size > 44, 5, "the first block recorded")
        async with http.post(f"{call}/recall", headers=OPERATOR) as r:
            assert r.status == 200 and (await r.json())["result"] == "recalling", await r.text()
        async with http.post(f"{call}/recall/return", headers=OPERATOR) as r:
            assert r.status == 200 and (await r.json())["result"] == "ok", await r.text()
        async with http.post(f"{call}/recall", headers=SUPERVISOR) as r:
            assert r.status == 403

        body = {"phone": "sup1", "operator": "op2", "mode": "listen"}
        async with http.post("/supervision", headers=SUPERVISOR, json=body) as r:
            assert r.status == 409 and (await r.json())["error"] == "operator_not_on_call"
        async with http.post("/supervision", headers=SUPERVISOR,
                             json={**body, "phone": "op3", "operator": "op1"}) as r:
            assert r.status == 422, await r.text()
        async with http.post("/supervision", headers=SUPERVISOR,
                             json={**body, "mode": "shout", "operator": "op1"}) as r:
            assert r.status == 422, await r.text()

        sup = await phones.supervisor_phone(1, ring=0.3, talk=None)
        async with http.post("/supervision", headers=SUPERVISOR,
                             json={**body, "operator": "op1"}) as r:
            assert r.status == 202, await r.text()
            sid = (await r.json())["supervision_id"]
        await wait_for(lambda: sid in daemon.supervision.active, 5, "sup1 answered")
        on = meter.now()
        await asyncio.sleep(2.0)
        assert meter.loud("sup1", on + 0.3, on + 2.0) >= HEARD, meter.summary(on + 0.3)
        async with http.get("/supervision", headers=SUPERVISOR) as r:
            listed = (await r.json())["active"]
        assert [(a["supervision_id"], a["call_id"], a["by"]) for a in listed] == [
            (sid, session.call_id, "test supervisor")]
        async with http.delete(f"/supervision/{sid}", headers=SUPERVISOR) as r:
            assert r.status == 200, await r.text()
        await logged(sup, "bye_received", 5)
        async with http.delete(f"/supervision/{sid}", headers=SUPERVISOR) as r:
            assert r.status == 404
    assert session.state is CallState.CONNECTED
    await daemon.writer.wait_idle(2)
    detail = await record(daemon, session.call_id, ended=False)
    kinds = [(e.type, e.data.get("by"), e.data.get("reason")) for e in detail.events
             if e.type.startswith(("recall", "supervision"))]
    assert kinds == [
        ("recall", "test operator", None),
        ("recall_returned", "test operator", "returned"),
        ("supervision_started", "test supervisor", None),
        ("supervision_ended", "test supervisor", "ended by test supervisor"),
    ], kinds
