"""The call path through the real test PBX: SIPp citizens on the trunks, SIPp desk phones,
the daemon over ARI, records in PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from siaga112 import legs
from siaga112.ari.client import AriClient
from siaga112.model import CallState, Disposition, LineType, OperatorState
from tests.conftest import ari_settings, stored_choice, wait_for
from tests.integration.phones import LANDLINE, MOBILE, e164, mobile_number

pytestmark = pytest.mark.integration


async def call_of(daemon, caller_e164: str, seconds: float = 10) -> str:
    """The call id of the live call from this caller."""

    def find() -> str | None:
        for s in daemon.stasis.sessions.values():
            if s.caller.e164 == caller_e164:
                return s.call_id
        return None

    return await wait_for(find, seconds, f"a live call from {caller_e164}")


async def record(daemon, call_id: str, ended: bool = True):
    async def get():
        await daemon.writer.wait_idle(2)
        detail = await daemon.repository.get_call(call_id)
        if detail is None or (ended and detail.call.ended_at is None):
            return None
        return detail

    return await wait_for(get, 15, f"the record of {call_id}")


async def test_mobile_call_reaches_the_daemon_and_is_answered(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=[])
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=1.5)
    call_id = await call_of(daemon, e164(number))
    result = await citizen.wait(15)
    assert result.ok, result.explain()
    assert result.events("answered"), "SIPp did not receive 200 OK"
    detail = await record(daemon, call_id)
    assert detail.call.line_type == LineType.MOBILE.value
    assert detail.call.trunk == "trunk-mobile"
    assert detail.call.caller == e164(number)
    assert detail.call.caller_raw == number
    assert detail.call.disposition == Disposition.ABANDONED.value
    types = [e.type for e in detail.events]
    assert types[:4] == ["arrived", "answered", "screened", "queued"]
    assert types[-1] == "ended"
    # The take-in's figures (call/cpu_wait.py): the part spent waiting for a core is within
    # the take-in, and the StasisStart was read soon after Asterisk stamped it.
    answered = detail.events[1].data
    assert 0 <= answered["cpu_wait_ms"] <= answered["latency_ms"] < 1000, answered
    assert 0 <= answered["event_age_ms"] < 2000, answered
    # The dialplan answered before Stasis(): the StasisStart found the channel Up.
    assert answered["answered_by"] == "dialplan", answered


async def test_landline_call_knows_its_trunk(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=[])
    citizen = await phones.citizen("0254200112", LANDLINE, hold=1.0)
    call_id = await call_of(daemon, "+62254200112")
    session = daemon.stasis.sessions[call_id]
    assert session.line_type is LineType.LANDLINE
    assert session.trunk == "trunk-landline"
    assert (await citizen.wait(15)).ok
    detail = await record(daemon, call_id)
    assert (detail.call.line_type, detail.call.trunk) == ("landline", "trunk-landline")


def ari_requests(daemon, via: str) -> float:
    """The daemon's ARI requests so far that went `via` the events socket or HTTP."""
    return sum(sample.value for metric in daemon.metrics.registry.collect()
               if metric.name == "siaga112_ari_request_seconds"
               for sample in metric.samples
               if sample.name.endswith("_count") and sample.labels.get("via") == via)


async def test_call_reaches_a_free_operator_in_one_mixing_bridge(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    op1 = await phones.operator(1, ring=0.3, talk=None)
    over_http, over_socket = ari_requests(daemon, "http"), ari_requests(daemon, "socket")
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=3.0, audio=phones.pcaps.speech(10))
    call_id = await call_of(daemon, e164(number))
    session = daemon.stasis.sessions[call_id]
    await wait_for(lambda: session.state is CallState.CONNECTED, 10, "connected")
    async with AriClient(ari_settings()) as ari:
        bridge = await ari.get_bridge(legs.call_bridge(call_id))
    assert bridge.bridge_type == "mixing"
    assert sorted(bridge.channels) == sorted([call_id, session.operator_channel])
    assert (await citizen.wait(15)).ok
    op_result = await op1.wait(10)
    invites = op_result.events("invite")
    assert len(invites) == 1
    assert invites[0]["caller"] == e164(number), "the desk phone must show the citizen's number"
    detail = await record(daemon, call_id)
    assert detail.call.operator == "op1"
    assert detail.call.disposition == Disposition.GENUINE.value
    assert detail.call.operator_answered_at is not None
    # Its requests (holding bridge, originate, call bridge, hang-ups) rode the events socket.
    assert ari_requests(daemon, "socket") - over_socket >= 4
    assert ari_requests(daemon, "http") == over_http


async def test_longest_idle_operator_rings_first(daemon_factory, phones) -> None:
    # op1 and op2 start idle in that order; op1 takes the first call, so op2 has been idle
    # longest when the second call comes.
    daemon = await daemon_factory(logged_in=["op1", "op2"])
    op1 = await phones.operator(1, ring=0.2, talk=1.0, calls=2)
    op2 = await phones.operator(2, ring=0.2, talk=1.0, calls=1)
    first = await phones.citizen(mobile_number(), MOBILE, hold=None)
    assert (await first.wait(15)).ok
    await wait_for(lambda: daemon.desk.get("op1").state is OperatorState.AVAILABLE, 5)
    second = await phones.citizen(mobile_number(), MOBILE, hold=None)
    assert (await second.wait(15)).ok
    assert len((await op2.wait(5)).events("invite")) == 1
    assert len(op1.logs()) and len([e for e in op1.logs() if e.event == "invite"]) == 1


async def test_operator_who_does_not_answer_is_skipped_and_paused(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1", "op2"], queue={"ring_timeout": 2})
    silent_desk = await phones.operator_noanswer(1)
    op2 = await phones.operator(2, ring=0.2, talk=1.0)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=None)
    assert (await citizen.wait(20)).ok
    assert len((await silent_desk.wait(5)).events("invite")) == 1
    assert len((await op2.wait(5)).events("invite")) == 1
    op1 = daemon.desk.get("op1")
    assert op1.state is OperatorState.PAUSED
    assert op1.reason and op1.reason.startswith("no_answer")
    await wait_for(lambda: _is(stored_choice("op1"), "paused"), 5, "op1 paused in the records")


async def test_blocked_caller_is_not_queued(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"], screening={"bypass_wait": 2.0})
    number = mobile_number()
    await daemon.policy.block(e164(number), hours=1, reason="test prank", by="pytest")
    await daemon.screening.reload()
    op1 = await phones.operator(1, ring=0.2, talk=1.0)
    citizen = await phones.citizen(number, MOBILE, hold=None)
    call_id = await call_of(daemon, e164(number))
    result = await citizen.wait(20)
    assert result.ok and result.events("bye_received"), result.explain()
    # Only INVITEs count: a BYE that Asterisk still retransmits for the previous test's leg may
    # reach the same desk-phone address (seen once).
    invites = [e for e in op1.logs() if e.event == "invite"]
    assert invites == [], "a blocked caller must not ring an operator"
    detail = await record(daemon, call_id)
    assert detail.call.disposition == Disposition.BLOCKED.value
    assert "queued" not in [e.type for e in detail.events]
    assert "blocked_announced" in [e.type for e in detail.events]


async def test_daemon_down_call_reaches_operator_and_leaves_its_record(
    stack, phones, daemon_factory
) -> None:
    from tests.conftest import reset_pbx

    await reset_pbx(["op1"])  # no daemon connected: Stasis() fails, Queue() takes the call
    op1 = await phones.operator(1, ring=0.2, talk=1.0)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=None)
    result = await citizen.wait(20)
    assert result.ok, result.explain()
    invites = (await op1.wait(5)).events("invite")
    assert len(invites) == 1
    assert invites[0]["caller"] in (number, e164(number))
    # Nothing lost: when the daemon is back, the dialplan's line becomes the call's record.
    daemon = await daemon_factory(logged_in=["op1"], reset=False)

    async def fallback_record():
        await daemon.writer.wait_idle(2)
        found = await daemon.repository.list_calls(caller=e164(number))
        return found and found[0].ended_at is not None and found[0]

    call = await wait_for(fallback_record, 20, "the fallback call's record")
    assert call.disposition == Disposition.FALLBACK.value
    assert call.operator == "op1"
    assert call.line_type == "mobile"


async def test_desk_phone_codes_log_in_pause_resume_log_out(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=[])
    desk = daemon.desk
    steps = [("*11", OperatorState.AVAILABLE), ("*13", OperatorState.PAUSED),
             ("*14", OperatorState.AVAILABLE), ("*12", OperatorState.LOGGED_OUT)]
    for code, state in steps:
        result = await phones.code(3, code)
        assert result.ok, result.explain()
        await wait_for(lambda s=state: desk.get("op3").state is s, 5, f"op3 {state}, {code}")
        # Kept in PostgreSQL, where a restarted daemon, the standby or another node finds it.
        await wait_for(lambda s=state: _is(stored_choice("op3"), s.value), 5, "op3 stored")
    # A code that does not exist changes nothing.
    result = await phones.code(3, "*19")
    assert result.ok, result.explain()
    assert desk.get("op3").state is OperatorState.LOGGED_OUT


async def test_operator_on_a_call_is_not_rung_again(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    op1 = await phones.operator(1, ring=0.2, talk=None, calls=1)
    first_number = mobile_number()
    first = await phones.citizen(first_number, MOBILE, hold=4.0)
    first_id = await call_of(daemon, e164(first_number))
    await wait_for(lambda: daemon.stasis.sessions[first_id].state is CallState.CONNECTED, 10)
    number = mobile_number()
    second = await phones.citizen(number, LANDLINE, hold=1.5)
    second_id = await call_of(daemon, e164(number))
    await wait_for(lambda: daemon.stasis.sessions[second_id].state is CallState.QUEUED, 5)
    assert daemon.queue.position(second_id) == 1
    assert (await second.wait(15)).ok
    assert (await first.wait(15)).ok
    assert len((await op1.wait(5)).events("invite")) == 1


async def _is(value, wanted: str) -> bool:
    return (await value) == wanted


async def cut_ari_connections() -> None:
    """Every TCP connection to ARI is reset at once (the events socket and HTTP's pool), as a
    network fault or a PBX restarting its HTTP server does; Asterisk itself stays up."""
    proc = await asyncio.create_subprocess_exec(
        "ss", "-K", "dst", "127.0.0.1", "dport", "=", ":8088",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize("cut_at", [CallState.QUEUED, CallState.RINGING_OPERATOR])
async def test_the_events_socket_cut_with_requests_in_flight_the_caller_still_reaches_the_operator(
        daemon_factory, phones, cut_at: CallState) -> None:
    """The call's requests ride the events socket: cut it (and HTTP's connections) the moment
    the caller is seen queued with nobody free, or the desk phone being rung (that step's
    requests may still be in flight; the unit tests hold one in flight for certain). A caller
    waiting in silence still reaches the operator, is never handed back, and the record says
    so."""
    queued_first = cut_at is CallState.QUEUED
    daemon = await daemon_factory(logged_in=[] if queued_first else ["op1"])
    op1 = await phones.operator(1, ring=0.3, talk=None)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=12.0)
    call_id = await call_of(daemon, e164(number))
    session = daemon.stasis.sessions[call_id]
    await wait_for(lambda: session.state is cut_at, 10, str(cut_at))
    await cut_ari_connections()
    if queued_first:  # the operator logs in while the daemon reconnects
        daemon.desk.choose("op1", OperatorState.AVAILABLE, reason="test", persist=False)
    await wait_for(lambda: session.state is CallState.CONNECTED, 20, "connected after the cut")
    # The daemon's requests are back on the socket once it has connected again.
    await wait_for(lambda: daemon.sockets[""].attached, 10, "requests over the socket again")
    assert (await citizen.wait(30)).ok
    await op1.wait(15)
    detail = await record(daemon, call_id)
    assert detail.call.operator == "op1"
    assert detail.call.disposition == Disposition.GENUINE.value
    types = [e.type for e in detail.events]
    assert "handed_back" not in types and "connected" in types
