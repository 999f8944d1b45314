"""The callback call's steps with a fake ARI: *9 takes the oldest open callback not being
called, rings the citizen on the call's trunk and bridges; the record gets arrived (outbound),
connected and ended (disposition callback, outcome); the API's refusals say why."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.fakes import FakeAri, ListSink

from siaga112.ari.models import Channel, ChannelDestroyed, StasisEnd, StasisStart
from siaga112.callbacks import (
    CallbackBusy,
    CallbackClosed,
    CallbackDialer,
    NoSuchCallback,
    OperatorBusy,
    dial_number,
)
from siaga112.model import OperatorState
from siaga112.records.schemas import Callback

T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


class Ari(FakeAri):
    async def ring(self, channel_id: str) -> None:
        self._call("ring", channel_id)

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                      json: dict[str, Any] | None = None) -> Any:
        """Only the citizen's leg is originated this way (into the dialplan's context)."""
        params = params or {}
        self._call("dial", params.get("endpoint"), params.get("channelId"),
                   params.get("context"), (json or {}).get("variables"))
        return {"id": params.get("channelId")}


@dataclass
class Op:
    state: OperatorState = OperatorState.LOGGED_OUT


@dataclass
class Desk:
    ops: dict[str, Op] = field(default_factory=lambda: {"op1": Op(), "op2": Op()})
    log: list[tuple[str, str, str]] = field(default_factory=list)

    def __contains__(self, name: str) -> bool:
        return name in self.ops

    def get(self, name: str) -> Op | None:
        return self.ops.get(name)

    def ringing(self, name: str, call_id: str) -> None:
        self.log.append(("ringing", name, call_id))

    def connected(self, name: str, call_id: str) -> None:
        self.log.append(("connected", name, call_id))

    def released(self, name: str, call_id: str) -> None:
        self.log.append(("released", name, call_id))

    def cancel_offer(self, name: str, call_id: str) -> None:
        self.log.append(("cancel_offer", name, call_id))


def entry(call_id: str, closed: bool = False) -> Callback:
    return Callback(call_id=call_id, caller="+6281234567890", line_type="mobile",
                    trunk="trunk-mobile", reason="abandoned", arrived_at=T0, ended_at=T0,
                    closed_at=T0 if closed else None,
                    closed_reason="called_again" if closed else None)


def dialer(ari: Ari, sink: ListSink, desk: Desk, entries: list[Callback]) -> CallbackDialer:
    async def open_() -> list[Callback]:
        return [e for e in entries if e.closed_at is None]

    async def find(call_id: str) -> Callback | None:
        return next((e for e in entries if e.call_id == call_id), None)

    return CallbackDialer(ari, "siaga112", sink, desk, open_, find)


def start(channel_id: str, *args: str, name: str = "") -> StasisStart:
    return StasisStart(type="StasisStart", args=list(args),
                       channel=Channel(id=channel_id, name=name or f"PJSIP/{channel_id}"))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_the_trunk_is_dialled_in_national_form() -> None:
    assert dial_number("+6281234567890") == "081234567890"
    assert dial_number("+62254123456") == "0254123456"


async def test_star9_calls_back_the_oldest_open_and_records_the_call() -> None:
    ari, sink, desk = Ari(), ListSink(), Desk()
    d = dialer(ari, sink, desk, [entry("old"), entry("new")])
    d.on_event(start("desk-chan", "desk", name="PJSIP/op2-00000001"))
    await settle()
    [call] = d.calls.values()
    assert call.callback.call_id == "old" and call.operator == "op2"
    assert ("dial", "PJSIP/081234567890@trunk-mobile", call.citizen_leg, "callback-answered",
            {"SIAGA112_CALLBACK": call.call_id}) in ari.calls
    assert ("subscribe", d.app, f"channel:{call.citizen_leg}") in ari.calls
    assert ("add_to_bridge", call.bridge, "desk-chan") in ari.calls
    assert ("connected", "op2", call.call_id) in desk.log  # busy: no 112 call offered
    # A second *9 meanwhile takes the next one.
    d.on_event(start("desk2", "desk", name="PJSIP/op1-00000002"))
    await settle()
    assert sorted(c.callback.call_id for c in d.calls.values()) == ["new", "old"]
    second = next(c for c in d.calls.values() if c.callback.call_id == "new")

    d.on_event(start(call.citizen_leg, "citizen"))
    await settle()
    assert ("add_to_bridge", call.bridge, call.citizen_leg) in ari.calls
    d.on_event(StasisEnd(type="StasisEnd", channel=Channel(id=call.citizen_leg)))
    await settle()
    mine = [e for e in sink.calls if e.call_id == call.call_id]
    assert [e.type.value for e in mine] == ["arrived", "connected", "ended"]
    assert mine[0].data["direction"] == "outbound" and mine[0].data["callback_of"] == "old"
    assert mine[0].data["trunk"] == "trunk-mobile"
    assert mine[-1].data["disposition"] == "callback" and mine[-1].data["outcome"] == "answered"
    assert [e.seq for e in mine] == [1, 2, 3]
    assert ("hangup", "desk-chan") in ari.calls and ("released", "op2", call.call_id) in desk.log
    await d.stop()
    assert sink.calls[-1].call_id == second.call_id and sink.calls[-1].data["outcome"] == "failed"


async def test_star9_passes_over_a_callback_it_cannot_dial() -> None:
    """The oldest entry came from the dialplan's fallback journal and has no trunk: *9 takes
    the next one instead of failing on it."""
    ari, sink, desk = Ari(), ListSink(), Desk()
    d = dialer(ari, sink, desk, [entry("no-trunk").model_copy(update={"trunk": None}),
                                 entry("dialable")])
    d.on_event(start("desk-chan", "desk", name="PJSIP/op1-00000001"))
    await settle()
    [call] = d.calls.values()
    assert call.callback.call_id == "dialable"
    assert [c for c in ari.calls if c[0] == "dial"][0][1] == "PJSIP/081234567890@trunk-mobile"
    await d.stop()


async def test_star9_with_nothing_open_goes_back_to_the_dialplan() -> None:
    ari, sink = Ari(), ListSink()
    d = dialer(ari, sink, Desk(), [entry("x", closed=True)])
    d.on_event(start("desk-chan", "desk", name="PJSIP/op1-00000001"))
    await settle()
    assert ("set_var", "desk-chan", "SIAGA112_CALLBACK", "none") in ari.calls
    assert ("continue_in_dialplan", "desk-chan", None) in ari.calls
    assert sink.calls == []


@pytest.mark.parametrize("cause, outcome", [(17, "busy"), (19, "no_answer"), (34, "failed")])
async def test_a_citizen_who_does_not_answer_is_an_attempt_with_its_outcome(
        cause: int, outcome: str) -> None:
    ari, sink, desk = Ari(), ListSink(), Desk()
    d = dialer(ari, sink, desk, [entry("a1")])
    d.on_event(start("desk-chan", "desk", name="PJSIP/op1-00000001"))
    await settle()
    [call] = d.calls.values()
    d.on_event(ChannelDestroyed(type="ChannelDestroyed", cause=cause,
                                channel=Channel(id=call.citizen_leg)))
    await settle()
    ended = sink.calls[-1]
    assert ended.type.value == "ended" and ended.data["outcome"] == outcome
    assert "connected" not in sink.types()
    assert d.calls == {}


async def test_the_api_rings_the_operator_first() -> None:
    ari, sink, desk = Ari(), ListSink(), Desk()
    d = dialer(ari, sink, desk, [entry("a1")])
    call = await d.call("a1", "op1", "test operator")
    assert ari.called("originate") == [("originate", "PJSIP/op1", call.desk_leg)]
    assert ("ringing", "op1", call.call_id) in desk.log
    d.on_event(start(call.desk_leg, "operator"))
    await settle()
    assert ari.called("dial")[0][1:3] == ("PJSIP/081234567890@trunk-mobile", call.citizen_leg)
    assert sink.types() == ["arrived", "ringing"]
    await d.stop()


async def test_an_operator_who_does_not_answer_ends_it() -> None:
    ari, sink, desk = Ari(), ListSink(), Desk()
    d = dialer(ari, sink, desk, [entry("a1")])
    call = await d.call("a1", "op1", "test operator")
    d.on_event(ChannelDestroyed(type="ChannelDestroyed", cause=19,
                                channel=Channel(id=call.desk_leg)))
    await settle()
    assert sink.calls[-1].data["outcome"] == "operator_no_answer"
    assert ("cancel_offer", "op1", call.call_id) in desk.log
    assert ari.called("dial") == []  # the citizen was never dialled


async def test_the_apis_refusals() -> None:
    ari, sink, desk = Ari(), ListSink(), Desk()
    d = dialer(ari, sink, desk, [entry("a1"), entry("closed", closed=True), entry("a2")])
    with pytest.raises(NoSuchCallback):
        await d.call("nope", "op1", "t")
    with pytest.raises(CallbackClosed):
        await d.call("closed", "op1", "t")
    await d.call("a1", "op1", "t")
    with pytest.raises(CallbackBusy):
        await d.call("a1", "op2", "t")
    desk.ops["op2"].state = OperatorState.ON_CALL
    with pytest.raises(OperatorBusy):
        await d.call("a2", "op2", "t")
    with pytest.raises(OperatorBusy):
        await d.call("a2", "op9", "t")
    await d.stop()
