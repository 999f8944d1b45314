"""A call's session with a fake ARI: the fail-open rules and the order of a call's steps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.fakes import FakeAri, ListSink, operator, rematch

from siaga112.agencies import Directory
from siaga112.ari.models import CallerID, Channel, StasisStart
from siaga112.call import CallDeps
from siaga112.holding import HoldingBridge
from siaga112.model import BlockEntry, CallState, OperatorState
from siaga112.operators import OperatorDesk
from siaga112.queue import CallQueue
from siaga112.screening import Screening
from siaga112.settings import Settings
from siaga112.stasis import Stasis


@pytest.fixture(autouse=True)
def routing_never_fails() -> Iterator[None]:
    """Stasis.on_event logs and swallows any routing fault (the reader must never die): so a
    test here that only checks "nothing happened" fails if routing raised."""
    with capture_logs() as logs:
        yield
    assert not [e for e in logs if e["event"] == "event_routing_failed"], logs


def build(ari: FakeAri, blocks: list[BlockEntry] | None = None, **settings: Any) -> tuple[
    Stasis, OperatorDesk, ListSink
]:
    s = Settings(**{"silence": {"enabled": False}, "queue": {"wrapup": 0}, **settings})
    sink = ListSink()

    async def load() -> list[BlockEntry]:
        return blocks or []

    screening = Screening(load)
    queue_ref: list[CallQueue] = []
    desk = OperatorDesk(["op1", "op2"], ari, sink, s.queue.wrapup, True,
                        on_change=lambda: rematch(queue_ref))
    queue = CallQueue(desk, on_change=lambda: None)
    queue_ref.append(queue)
    deps = CallDeps(ari=ari, settings=s, screening=screening, queue=queue,
                    desk=desk, sink=sink, directory=Directory(s.agencies),
                    holding=HoldingBridge(ari, 30))
    return Stasis(deps), desk, sink


def citizen(call_id: str = "1700000000.1", number: str = "081234567890") -> StasisStart:
    return StasisStart(
        type="StasisStart", args=["citizen"],
        channel=Channel(id=call_id, state="Ring", caller=CallerID(number=number),
                        channelvars={"SIAGA112_LINE": "mobile", "SIAGA112_TRUNK": "trunk-mobile"}),
    )


async def settle(stasis: Stasis) -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_an_exception_in_the_handler_hands_the_call_back_to_the_dialplan() -> None:
    ari = FakeAri(fail={"answer": RuntimeError("boom")})
    stasis, _, sink = build(ari)
    with capture_logs() as logs:
        stasis.on_event(citizen())
        await settle(stasis)
    assert ari.called("continue_in_dialplan") == [
        ("continue_in_dialplan", "1700000000.1", "fallback")
    ]
    assert sink.types()[-2:] == ["handed_back", "ended"]
    assert sink.calls[-1].data["disposition"] == "fallback"
    assert any(e["event"] == "call_handler_failed" for e in logs)
    assert stasis.sessions == {}


async def test_a_call_is_answered_screened_queued_and_offered_to_the_longest_idle() -> None:
    ari = FakeAri()
    stasis, desk, sink = build(ari)
    stasis.on_event(citizen())
    await settle(stasis)
    assert sink.types() == ["arrived", "answered", "screened", "queued", "ringing"]
    assert ari.called("originate")[0][1] == "PJSIP/op1"
    assert operator(desk, "op1").state is OperatorState.RINGING
    session = stasis.sessions["1700000000.1"]
    assert session.state is CallState.RINGING_OPERATOR
    await stasis.close()


async def test_a_blocked_number_hears_why_and_is_not_queued() -> None:
    ari = FakeAri()
    block = BlockEntry(number="+6281234567890", blocked_until=None, reason="prank", by="test")
    stasis, desk, sink = build(ari, blocks=[block])
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle(stasis)
    assert "queued" not in sink.types()
    assert ari.called("play")[0][2] == "sound:siaga112/blocked"
    assert stasis.sessions["1700000000.1"].state is CallState.REJECTED
    assert not ari.called("originate")
    await stasis.close()


@pytest.mark.parametrize("raw", ["08abc", "x" * 200, "'; DROP TABLE calls;--", "☎️112", ""])
async def test_garbage_caller_ids_still_reach_an_operator(raw: str) -> None:
    ari = FakeAri()
    stasis, _, sink = build(ari)
    stasis.on_event(citizen(number=raw))
    await settle(stasis)
    assert sink.types()[-1] == "ringing"
    assert sink.calls[0].data["caller"] is None
    await stasis.close()


async def test_an_unknown_event_is_ignored() -> None:
    from siaga112.ari.models import parse_event

    stasis, _, sink = build(FakeAri())
    stasis.on_event(parse_event('{"type": "SomethingNew", "application": "siaga112"}'))
    await settle(stasis)
    assert sink.calls == []


async def test_an_offer_made_after_the_caller_hung_up_frees_the_operator() -> None:
    from siaga112.ari.models import StasisEnd

    ari = FakeAri()
    stasis, desk, sink = build(ari)
    desk.choose("op1", OperatorState.LOGGED_OUT, None, persist=False)
    desk.choose("op2", OperatorState.LOGGED_OUT, None, persist=False)
    stasis.on_event(citizen())
    await settle(stasis)
    session = stasis.sessions["1700000000.1"]
    assert session.state is CallState.QUEUED
    # The caller's hang-up is in the call's inbox before the queue's offer.
    session.post(StasisEnd(type="StasisEnd", channel=Channel(id=session.call_id)))
    desk.choose("op1", OperatorState.AVAILABLE, None, persist=False)
    assert operator(desk, "op1").state is OperatorState.RINGING
    await settle(stasis)
    assert stasis.sessions == {}
    assert operator(desk, "op1").state is OperatorState.AVAILABLE
    assert not ari.called("originate")


async def test_a_desk_phone_that_becomes_unavailable_is_not_rung() -> None:
    from siaga112.ari.models import parse_event

    ari = FakeAri()
    stasis, desk, sink = build(ari)
    stasis.on_event(parse_event(
        '{"type": "DeviceStateChanged", "application": "siaga112",'
        ' "device_state": {"name": "PJSIP/op1", "state": "UNAVAILABLE"}}'
    ))
    assert operator(desk, "op1").reachable is False
    stasis.on_event(citizen())
    await settle(stasis)
    assert ari.called("originate")[0][1] == "PJSIP/op2"
    stasis.on_event(parse_event(
        '{"type": "DeviceStateChanged", "application": "siaga112",'
        ' "device_state": {"name": "PJSIP/op1", "state": "NOT_INUSE"}}'
    ))
    assert operator(desk, "op1").reachable is True
    await stasis.close()


async def test_a_caller_who_leaves_while_the_desk_phone_rings_frees_it_without_wrapup() -> None:
    from siaga112.ari.models import StasisEnd

    ari = FakeAri()
    stasis, desk, sink = build(ari, queue={"wrapup": 30})
    stasis.on_event(citizen())
    await settle(stasis)
    assert operator(desk, "op1").state is OperatorState.RINGING
    stasis.on_event(StasisEnd(type="StasisEnd", channel=Channel(id="1700000000.1")))
    await settle(stasis)
    assert operator(desk, "op1").state is OperatorState.AVAILABLE
    assert ("hangup", "1700000000.1-op-op1-1") in ari.calls


async def test_a_hand_back_that_asterisk_refuses_at_first_is_tried_again() -> None:
    from siaga112.ari.client import Unreachable

    class Flaky(FakeAri):
        refusals = 2

        async def continue_in_dialplan(self, channel_id: str, context: str | None = None,
                                       extension: str = "s", priority: int = 1) -> None:
            self._call("continue_in_dialplan", channel_id, context)
            if self.refusals:
                self.refusals -= 1
                raise Unreachable("POST", "/continue", 0, "timeout")

    ari = Flaky(fail={"answer": RuntimeError("boom")})
    stasis, _, sink = build(ari)
    stasis.on_event(citizen())
    for _ in range(40):
        await asyncio.sleep(0.05)
        if not stasis.sessions:
            break
    assert len(ari.called("continue_in_dialplan")) == 3
    assert sink.calls[-1].data["cause"] == "handed back to dialplan"
