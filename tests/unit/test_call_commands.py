"""Commands on a live call (what the HTTP API sends through Stasis.command) come back typed: a
CommandResult, or a CommandError from call/errors.py, on a real Stasis and CallSession with a
fake ARI. The API's mapping of each to an HTTP status is in test_http_api.py."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs
from tests.fakes import FakeAri, FakeClock, ListSink, rematch

from siaga112.agencies import Directory
from siaga112.ari.client import Unreachable
from siaga112.ari.models import CallerID, Channel, ChannelDtmfReceived, StasisStart
from siaga112.call import CallDeps
from siaga112.call.errors import (
    CallNotConnected,
    CallNotLive,
    CallNotResponding,
    UnknownAgency,
    UnknownCategory,
)
from siaga112.call.items import CommandKind, CommandResult
from siaga112.holding import HoldingBridge
from siaga112.model import BlockEntry, CallState, Disposition, OperatorState
from siaga112.operators import OperatorDesk
from siaga112.queue import CallQueue
from siaga112.screening import Screening
from siaga112.settings import Settings
from siaga112.stasis import Stasis

CALL = "1700000000.7"
OP_LEG = f"{CALL}-op-op1-1"


def build(ari: FakeAri) -> tuple[Stasis, OperatorDesk, ListSink]:
    s = Settings.model_validate({"silence": {"enabled": False}, "queue": {"wrapup": 0}})
    sink = ListSink()

    async def load() -> list[BlockEntry]:
        return []

    queue_ref: list[CallQueue] = []
    desk = OperatorDesk(["op1"], ari, sink, s.queue.wrapup, True,
                        on_change=lambda: rematch(queue_ref))
    queue = CallQueue(desk, on_change=lambda: None)
    queue_ref.append(queue)
    deps = CallDeps(ari=ari, settings=s, screening=Screening(load), queue=queue, desk=desk,
                    sink=sink, directory=Directory(s.agencies), holding=HoldingBridge(ari, 30),
                    clock=FakeClock())
    return Stasis(deps), desk, sink


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


async def a_call(connected: bool) -> tuple[Stasis, FakeAri, ListSink]:
    """A live call: queued with nobody at the desk, or answered by op1."""
    ari = FakeAri()
    stasis, desk, sink = build(ari)
    if not connected:
        desk.choose("op1", OperatorState.LOGGED_OUT, None, persist=False)
    stasis.on_event(StasisStart(
        type="StasisStart", args=["citizen"],
        channel=Channel(id=CALL, state="Ring", caller=CallerID(number="081234567890"),
                        channelvars={"SIAGA112_LINE": "mobile"})))
    await settle()
    if connected:
        stasis.on_event(StasisStart(type="StasisStart", args=["operator", CALL],
                                    channel=Channel(id=OP_LEG)))
        await settle()
    want = CallState.CONNECTED if connected else CallState.QUEUED
    assert stasis.sessions[CALL].state is want
    return stasis, ari, sink


async def test_an_agency_is_dialled_then_already_on_the_call() -> None:
    stasis, ari, sink = await a_call(connected=True)
    first = await stasis.command(CALL, CommandKind.AGENCY, "02", "op1")
    again = await stasis.command(CALL, CommandKind.AGENCY, "02", "op1")
    assert (first, again) == (CommandResult.DIALLING, CommandResult.ALREADY_ON_CALL)
    assert [c[1] for c in ari.called("originate")] == ["PJSIP/op1", "PJSIP/agency02"]  # once
    assert sink.types().count("agency_requested") == 1


AGENCY_LEG = f"{CALL}-ag-02-0-1"


async def agency_dial_timed_out() -> tuple[Stasis, FakeAri, FakeClock, ListSink]:
    """op1 asks for agency 02; the PBX does not answer the dial of its duty line in time (a
    burst): the dial may still be carried out late."""
    stasis, ari, sink = await a_call(connected=True)
    ari.fail["originate"] = Unreachable("POST", "/channels", 0, "TimeoutError()")
    assert await stasis.command(CALL, CommandKind.AGENCY, "02", "op1") is CommandResult.DIALLING
    await settle()
    del ari.fail["originate"]
    assert ari.called("originate")[-1][2] == AGENCY_LEG
    clock = stasis._deps.clock
    assert isinstance(clock, FakeClock)
    return stasis, ari, clock, sink


async def test_a_duty_line_dialled_late_that_answers_joins_the_call() -> None:
    """Once, the line was given up at once for the fallback line, and the duty officer who
    answered the late ring was hung up on."""
    stasis, ari, clock, sink = await agency_dial_timed_out()
    assert "agency_line_failed" not in sink.types()
    clock.advance(10)
    await settle()
    stasis.on_event(StasisStart(type="StasisStart", args=["agency", CALL, "02"],
                                channel=Channel(id=AGENCY_LEG)))
    await settle()
    assert ("hangup", AGENCY_LEG) not in ari.calls
    assert "agency_joined" in sink.types()
    assert [c[1] for c in ari.called("originate")] == ["PJSIP/op1", "PJSIP/agency02"]
    clock.advance(60)  # the dial's timer, gone, changes nothing
    await settle()
    assert ("hangup", AGENCY_LEG) not in ari.calls and "agency_line_failed" not in sink.types()


async def test_a_duty_line_never_dialled_is_hung_up_and_the_fallback_line_rung() -> None:
    stasis, ari, clock, sink = await agency_dial_timed_out()
    unconfirmed_for = Settings().agency.answer_timeout + Settings().ari.request_timeout
    clock.advance(unconfirmed_for - 1)
    await settle()
    assert len(ari.called("originate")) == 2 and "agency_line_failed" not in sink.types()
    clock.advance(1.5)
    await settle()
    assert ("hangup", AGENCY_LEG) in ari.calls
    assert "agency_line_failed" in sink.types()
    assert [c[1] for c in ari.called("originate")][-1] == "PJSIP/agency02-fb"
    assert stasis.sessions[CALL].state is CallState.CONNECTED


async def test_a_duty_line_that_rang_out_while_we_were_away_gives_way_to_its_fallback(
) -> None:
    """The events socket was down while police's duty line rang out: its end never came.
    The resync finds the leg gone: the fallback line is rung (once, it stayed "dialling" for
    good, and the citizen was left with it alone when the operator hung up)."""
    stasis, ari, sink = await a_call(connected=True)
    assert await stasis.command(CALL, CommandKind.AGENCY, "02", "op1") is CommandResult.DIALLING
    ari.alive = {CALL, OP_LEG}  # the duty line's leg is not there any more
    await stasis.resync()
    await settle()
    failed = [e.data for e in sink.calls if e.type == "agency_line_failed"]
    assert [(f["line"], f["reason"]) for f in failed] == [
        ("PJSIP/agency02", "gone while we were away")]
    assert [c[1] for c in ari.called("originate")][-1] == "PJSIP/agency02-fb"
    assert stasis.sessions[CALL].state is CallState.CONNECTED


async def test_a_duty_line_that_answered_while_we_were_away_joins_the_call() -> None:
    stasis, ari, sink = await a_call(connected=True)
    assert await stasis.command(CALL, CommandKind.AGENCY, "02", "op1") is CommandResult.DIALLING
    ari.alive = {CALL, OP_LEG, AGENCY_LEG}  # up: the officer answered, unseen
    await stasis.resync()
    await settle()
    assert stasis.sessions[CALL].agencies.joined() == ["02"]
    stasis.on_event(StasisStart(type="StasisStart", args=["agency", CALL, "02"],
                                channel=Channel(id=AGENCY_LEG)))  # the socket's own, late
    await settle()
    assert sink.types().count("agency_joined") == 1
    adds = [c for c in ari.called("add_to_bridge") if AGENCY_LEG in c[2]]
    assert len(adds) == 1, adds


async def fire_brigade_joined() -> tuple[Stasis, FakeAri, ListSink, str]:
    """A call with op1 on it and the fire brigade (01) joined: (..., the brigade's leg)."""
    stasis, ari, sink = await a_call(connected=True)
    await stasis.command(CALL, CommandKind.AGENCY, "01", "op1")
    leg = f"{CALL}-ag-01-0-1"
    stasis.on_event(StasisStart(type="StasisStart", args=["agency", CALL, "01"],
                                channel=Channel(id=leg)))
    await settle()
    return stasis, ari, sink, leg


async def test_a_resync_leaves_a_joined_agency_as_it_is() -> None:
    """Only a line still ringing can have answered unseen: a joined agency is not told again
    (nor logged as answered while away at every reconnect)."""
    stasis, ari, sink, leg = await fire_brigade_joined()
    ari.alive = {CALL, OP_LEG, leg}
    with capture_logs() as logs:
        await stasis.resync()
        await settle()
    assert not [e for e in logs if e["event"] == "answered_while_away"]
    assert sink.types().count("agency_joined") == 1
    assert len([c for c in ari.called("add_to_bridge") if leg in c[2]]) == 1


async def test_operator_and_agency_gone_while_we_were_away_leave_the_citizen_queued() -> None:
    """Both ended while the socket was down: we cannot tell whether either meant to end the
    call, so the citizen goes back to the front of the queue, never hung up."""
    stasis, ari, sink, _leg = await fire_brigade_joined()
    assert stasis.sessions[CALL].agencies.joined() == ["01"]
    ari.alive = {CALL}
    await stasis.resync()
    await settle()
    assert ("hangup", CALL) not in ari.calls and "ended" not in sink.types()
    assert "requeued" in sink.types()
    assert stasis.sessions[CALL].state in (CallState.QUEUED, CallState.RINGING_OPERATOR)


async def test_an_agency_gone_while_we_were_away_after_the_operator_left_requeues_the_citizen(
) -> None:
    """op1 hung up and left the citizen with the fire brigade; the brigade's leg ended while
    the socket was down. Whether it meant to end the call is not known: the citizen goes back
    to the front of the queue, never hung up (before, the call was ended and the citizen hung
    up, as after an agency's own hang-up)."""
    from siaga112.ari.models import ChannelDestroyed

    stasis, ari, sink, leg = await fire_brigade_joined()
    stasis.on_event(ChannelDestroyed(type="ChannelDestroyed", cause=16,
                                     channel=Channel(id=OP_LEG)))  # op1 hangs up
    await settle()
    assert stasis.sessions[CALL].agencies.joined() == ["01"]
    ari.alive = {CALL}
    await stasis.resync()
    await settle()
    assert ("hangup", CALL) not in ari.calls and "ended" not in sink.types()
    assert [e.data.get("reason") for e in sink.calls if e.type == "requeued"] == ["agency_gone"]


async def test_an_unknown_agency_is_refused_and_the_operator_hears_why() -> None:
    stasis, ari, sink = await a_call(connected=True)
    with pytest.raises(UnknownAgency, match="unknown agency 99"):
        await stasis.command(CALL, CommandKind.AGENCY, "99", "op1")
    assert ("play", OP_LEG, "sound:siaga112/unknown-code") in ari.called("play")
    assert not ari.called("originate")[1:]  # only op1's desk phone was ever dialled
    assert stasis.sessions[CALL].state is CallState.CONNECTED


async def test_an_agency_for_a_call_not_connected_is_refused() -> None:
    stasis, ari, sink = await a_call(connected=False)
    with pytest.raises(CallNotConnected, match="call is queued, not connected") as refused:
        await stasis.command(CALL, CommandKind.AGENCY, "02", "api")
    assert refused.value.state is CallState.QUEUED
    assert "agency_requested" not in sink.types()


async def test_marking_and_a_category_are_ok_and_an_unknown_category_is_refused() -> None:
    stasis, ari, sink = await a_call(connected=True)
    assert await stasis.command(CALL, CommandKind.DISPOSITION, "prank", "op1") is \
        CommandResult.OK
    assert await stasis.command(CALL, CommandKind.CATEGORY, "05", "op1") is CommandResult.OK
    with pytest.raises(UnknownCategory, match="unknown category 13"):
        await stasis.command(CALL, CommandKind.CATEGORY, "13", "op1")
    assert sink.types().count("category") == 1
    assert stasis.sessions[CALL].disposition is Disposition.PRANK


async def test_a_call_the_daemon_lacks_is_not_live() -> None:
    stasis, _, _ = await a_call(connected=False)
    with pytest.raises(CallNotLive, match="'1600000000.1' is not live"):
        await stasis.command("1600000000.1", CommandKind.DISPOSITION, "ghost", "api")


async def test_a_call_that_does_not_take_the_command_is_not_responding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stasis, _, _ = await a_call(connected=True)
    monkeypatch.setattr(stasis.sessions[CALL], "post", lambda item: None)  # a stuck inbox
    real_wait_for = asyncio.wait_for
    monkeypatch.setattr(asyncio, "wait_for", lambda fut, _t: real_wait_for(fut, 0))
    with pytest.raises(CallNotResponding, match="did not take the agency command in time"):
        await stasis.command(CALL, CommandKind.AGENCY, "02", "api")


async def test_an_unknown_agency_code_from_the_desk_phone_is_no_fault() -> None:
    stasis, ari, _ = await a_call(connected=True)
    with capture_logs() as logs:
        for digit in "*299":
            stasis.on_event(ChannelDtmfReceived(type="ChannelDtmfReceived", digit=digit,
                                                channel=Channel(id=OP_LEG)))
        await settle()
    assert ("play", OP_LEG, "sound:siaga112/unknown-code") in ari.called("play")
    assert [e["event"] for e in logs if e["log_level"] in ("error", "exception")] == []
    assert stasis.sessions[CALL].state is CallState.CONNECTED
