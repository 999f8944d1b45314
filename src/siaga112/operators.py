"""Operators at their desk phones: logged in or out, paused, ringing, on a call, in wrap-up.

The state an operator chose (logged in, logged out, paused and why) and since when they are
idle are kept in PostgreSQL (operator_store.py), the same for every daemon and PBX node and
across PBX restarts: written for the desk-phone codes (the dialplan tells us through Stasis),
the API, and when we pause an operator who did not answer; read again on every (re)connect.
The desk works from its own copy in memory, so calls go on while PostgreSQL is away. What the
daemon derives (ringing, on a call, wrap-up) is rebuilt from Asterisk's bridges by the resync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from siaga112.ari.client import AriError
from siaga112.ari.protocol import Ari
from siaga112.model import CHOSEN_STATES, OperatorEvent, OperatorSnapshot, OperatorState, utcnow
from siaga112.operator_store import Choice, ChoiceStore, MemoryChoices
from siaga112.sinks import EventSink

log = structlog.get_logger(__name__)
# An operator's changes that a call's step makes (its call_state line says so already).
CALL_STEPS = frozenset({(OperatorState.AVAILABLE, OperatorState.RINGING),
                        (OperatorState.RINGING, OperatorState.ON_CALL)})


@dataclass
class Operator:
    name: str
    chosen: OperatorState = OperatorState.AVAILABLE  # what the operator set: available/paused/out
    reason: str | None = None
    reachable: bool = True
    busy: OperatorState | None = None  # RINGING, ON_CALL or WRAPUP
    call_id: str | None = None
    idle_since: float = field(default_factory=time.monotonic)
    idle_since_wall: datetime = field(default_factory=utcnow)
    # The last snapshot, given again while it still says the same: the desk's every change
    # snapshots all operators, and the consumers (MQTT's retained states) skip one they have.
    _snapshot: OperatorSnapshot | None = field(default=None, repr=False, compare=False)

    @property
    def state(self) -> OperatorState:
        if self.chosen is not OperatorState.AVAILABLE:
            return self.chosen
        return self.busy or OperatorState.AVAILABLE

    @property
    def free(self) -> bool:
        return self.state is OperatorState.AVAILABLE and self.reachable

    def snapshot(self) -> OperatorSnapshot:
        state = self.state
        idle_since = self.idle_since_wall if state is OperatorState.AVAILABLE else None
        last = self._snapshot
        if (last is None or last.state is not state or last.reachable != self.reachable
                or last.reason != self.reason or last.call_id != self.call_id
                or last.idle_since != idle_since):
            last = self._snapshot = OperatorSnapshot(
                operator=self.name, state=state, reachable=self.reachable, reason=self.reason,
                call_id=self.call_id, idle_since=idle_since)
        return last


class OperatorDesk:
    def __init__(
        self,
        names: list[str],
        ari: Ari,
        sink: EventSink,
        wrapup: float,
        start_logged_in: bool,
        on_change: Callable[[], None],
        store: ChoiceStore | MemoryChoices | None = None,
    ) -> None:
        default = OperatorState.AVAILABLE if start_logged_in else OperatorState.LOGGED_OUT
        self._store = store or MemoryChoices()
        self._ops = {n: Operator(n, chosen=default) for n in names}
        self._ari = ari
        self._sink = sink
        self._wrapup = wrapup
        self._on_change = on_change
        self._wrapup_timers: dict[str, asyncio.TimerHandle] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def get(self, name: str) -> Operator | None:
        return self._ops.get(name)

    def snapshot(self) -> list[OperatorSnapshot]:
        return [op.snapshot() for op in self._ops.values()]

    # -- loading from Asterisk --------------------------------------------------------------

    async def load(self) -> None:
        """Chosen states and idle times from the store, reachability from the endpoints. With
        the store unreadable (PostgreSQL away) the desk keeps what it has."""
        choices = await self._store.load()
        for op in self._ops.values():
            choice = (choices or {}).get(op.name)
            if choice is None:
                continue
            op.chosen = choice.chosen
            op.reason = choice.reason if choice.chosen is not OperatorState.AVAILABLE else None
            if choice.idle_since is not None:  # longest idle across daemons and restarts
                idle_for = max(0.0, (utcnow() - choice.idle_since).total_seconds())
                op.idle_since = time.monotonic() - idle_for
                op.idle_since_wall = choice.idle_since
        try:
            endpoints = await self._ari.endpoints("PJSIP")
        except AriError as exc:
            log.warning("endpoints_unreadable", error=str(exc))
            endpoints = []
        for ep in endpoints:
            if ep.resource in self._ops:
                self._ops[ep.resource].reachable = ep.state != "offline"
        log.info("operators_loaded", **{op.name: op.state.value for op in self._ops.values()})
        self._on_change()

    # -- what operators choose ---------------------------------------------------------------

    def choose(self, name: str, state: OperatorState, reason: str | None, persist: bool) -> None:
        op = self._ops.get(name)
        if op is None:
            log.warning("operator_unknown", operator=name)
            return
        if state not in CHOSEN_STATES:
            raise ValueError(f"an operator cannot choose state {state}")
        self._set_choice(op, state, reason, persist, op.state)

    def _set_choice(self, op: Operator, state: OperatorState, reason: str | None, persist: bool,
                    was: OperatorState) -> None:
        op.chosen = state
        op.reason = reason if state is not OperatorState.AVAILABLE else None
        if state is OperatorState.AVAILABLE and op.busy is None:
            self._idle(op)
        if persist:
            self._save(op)
        self._changed(op, was)

    def _save(self, op: Operator, urgent: bool = True) -> None:
        self._store.save(Choice(op.name, op.chosen, op.reason, op.idle_since_wall, utcnow()),
                         urgent)

    def reachability(self, name: str, state: str) -> None:
        """From a device state (UNAVAILABLE, INVALID: not reachable; NOT_INUSE, INUSE, ...:
        reachable) or an endpoint state ("offline": not reachable)."""
        op = self._ops.get(name)
        if op is None:
            return
        reachable = state not in ("offline", "UNAVAILABLE", "INVALID")
        if reachable != op.reachable:
            op.reachable = reachable
            log.info("operator_reachability", operator=name, reachable=reachable)
            self._changed(op, op.state)

    # -- what calls do to operators ------------------------------------------------------------

    def anyone_can_answer(self) -> bool:
        """Is any operator logged in, not paused and reachable (free or busy with a call)?"""
        return any(op.chosen is OperatorState.AVAILABLE and op.reachable
                   for op in self._ops.values())

    def pick_free(self) -> Operator | None:
        free = [op for op in self._ops.values() if op.free]
        return min(free, key=lambda o: o.idle_since) if free else None

    def ringing(self, name: str, call_id: str) -> None:
        self._busy(name, OperatorState.RINGING, call_id)

    def connected(self, name: str, call_id: str) -> None:
        self._busy(name, OperatorState.ON_CALL, call_id)

    def no_answer(self, name: str, call_id: str, reason: str = "no_answer") -> None:
        """The phone rang out, or died in the call (reason phone_lost): pause the operator, so
        the next caller is not sent there. The change is told from what the phone was doing
        (ringing, on_call), not from the free state in between."""
        op = self._ops[name]
        if op.call_id != call_id:
            return
        was = op.state
        op.busy = None
        op.call_id = None
        self._set_choice(op, OperatorState.PAUSED, reason, True, was)

    def cancel_offer(self, name: str, call_id: str) -> None:
        """An offer that was never rung (the caller hung up first): the operator is free again
        at once, keeping its place in the idle order."""
        op = self._ops.get(name)
        if op is None or op.call_id != call_id or op.busy is not OperatorState.RINGING:
            return
        was = op.state
        op.busy = None
        op.call_id = None
        self._changed(op, was)

    def released(self, name: str, call_id: str) -> None:
        """The operator's call ended: wrap-up, then available again."""
        op = self._ops.get(name)
        if op is None or op.call_id != call_id:
            return
        was = op.state
        op.call_id = None
        if self._wrapup <= 0:
            op.busy = None
            self._idle(op)
            self._changed(op, was)
            return
        op.busy = OperatorState.WRAPUP
        self._changed(op, was)
        loop = asyncio.get_running_loop()
        self._wrapup_timers[name] = loop.call_later(self._wrapup, self._wrapup_done, name)

    def _wrapup_done(self, name: str) -> None:
        op = self._ops[name]
        self._wrapup_timers.pop(name, None)
        if op.busy is OperatorState.WRAPUP:
            was = op.state
            op.busy = None
            self._idle(op)
            self._changed(op, was)

    def reset_runtime(self) -> None:
        """Forget ringing and on-call before a resync rebuilds them from Asterisk. Wrap-up
        is kept, with its timer: it is the operator's own time after a call that has ended,
        which Asterisk knows nothing of (forgotten, a reconnect gave an operator who had
        just hung up the next caller at once, before their report was written)."""
        for op in self._ops.values():
            if op.busy is not OperatorState.WRAPUP:
                op.busy = None
            op.call_id = None

    def _busy(self, name: str, state: OperatorState, call_id: str) -> None:
        op = self._ops[name]
        timer = self._wrapup_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        was = op.state
        op.busy = state
        op.call_id = call_id
        self._changed(op, was)

    def _idle(self, op: Operator) -> None:
        op.idle_since = time.monotonic()
        op.idle_since_wall = utcnow()
        self._save(op, urgent=False)  # a choice that made it (choose) is saved urgently

    def _changed(self, op: Operator, was: OperatorState) -> None:
        if op.state is not was:
            # An offer and its answer come with the call's own line (call_state
            # ringing_operator, connected) naming the operator: a second line each was two of a
            # call's nine. Other ways there (a resync after a restart) keep theirs.
            say = log.debug if (was, op.state) in CALL_STEPS else log.info
            say("operator_state", operator=op.name, state=op.state.value, was=was.value,
                reason=op.reason, call_id=op.call_id)
            self._sink.operator_event(
                OperatorEvent(operator=op.name, state=op.state, reason=op.reason)
            )
        self._on_change()

    def close(self) -> None:
        for timer in self._wrapup_timers.values():
            timer.cancel()
