"""One citizen's call, from arrival to hang-up: one task per call, one item at a time, in order.

States: arrived -> screened -> queued -> ringing_operator -> connected -> ended, with the
rejected branch for a blocked number. The session owns the call's state and its inbox; each
step is a part of its own (arrival.py, waiting.py, operator_leg.py, agency_leg.py, ending.py,
resume.py). The rule every part keeps: the system never ends a citizen's call on its own, except
a blocked number that heard the whole announcement and had the whole wait to press the bypass
digit, and a line that is dead.

Faults: a leg that vanishes under an ARI request (404, or 400/409/422 "not found" / "not in
Stasis") is that leg's hang-up, never a fault. Any other exception before the citizen talks to
a person hands the call back to the dialplan's fallback queue (fail open); once connected, it
is logged and the conversation stays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from siaga112 import ids, legs
from siaga112.ari.client import AriError, channel_gone
from siaga112.ari.models import (
    AriEvent,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelTalkingStarted,
    PlaybackFinished,
    StasisEnd,
)
from siaga112.call.agency_leg import LINE_UNCONFIRMED, AgencyLegs
from siaga112.call.arrival import Arrival
from siaga112.call.cpu_wait import Routed
from siaga112.call.deps import CallDeps
from siaga112.call.desk_media import DESK_MEDIA
from siaga112.call.ending import Ending
from siaga112.call.items import (
    Command,
    Item,
    NodeLost,
    Offer,
    OperatorAway,
    OverflowNow,
    Resume,
    StopNow,
    Timer,
)
from siaga112.call.operator_leg import RING_UNCONFIRMED, OperatorLeg
from siaga112.call.resume import take_back
from siaga112.call.waiting import Waiting
from siaga112.callerid import CallerId, normalise
from siaga112.model import CallEvent, CallEventType, CallState, Disposition, LineType, utcnow

log = structlog.get_logger(__name__)


class CallSession:
    def __init__(
        self,
        citizen: Channel,
        deps: CallDeps,
        on_done: Callable[[str], None],
        resume: Resume | None = None,
        routed: Routed | None = None,
    ) -> None:
        self.call_id = citizen.id
        self.citizen = citizen
        self.deps = deps
        self.clock = deps.clock
        self.state = CallState.ARRIVED
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        self._on_done = on_done
        self.resume = resume
        # The StasisStart as routed (None: taken back after a restart, no take-in to measure)
        self.routed = routed or Routed(time.monotonic(), None, None)
        self._seq = 0
        self._timers: dict[str, Any] = {}
        tags = ids.channel_tags(citizen.channelvars)  # checked: a bad tag is left out
        known = {t.value for t in LineType}
        self.line_type = LineType(tags.line) if tags.line in known else LineType.UNKNOWN
        self.trunk = tags.trunk
        self.geo_format = tags.geo  # the carrier sent a location (location/network.py reads it)
        self.caller: CallerId = normalise(citizen.caller.number)
        self.arrived_at = citizen.creationtime or utcnow()
        self.priority = False
        self.flags: list[str] = []
        self.operator: str | None = None
        self.operator_channel: str | None = None
        self.disposition: Disposition | None = None
        self.hangup_cause = ""
        # The call's bridge may exist: made when an operator answers (operator_leg.py), or
        # unknown for a call taken back after a restart. A call that never got so far has no
        # bridge to destroy at its end (most calls at load: one request each saved).
        self.bridge_made = resume is not None
        # Its id: the first is the call's own; once one may have been made, a later bridging
        # takes a fresh one (legs.fresh_call_bridge).
        self.bridge_id = (resume.bridge if resume is not None and resume.bridge
                          else legs.call_bridge(self.call_id))
        self.taken_back = asyncio.Event()  # set once arrival or take-back has run
        # The parts, one job each, in the order a call meets them.
        self.arrival = Arrival(self)
        self.waiting = Waiting(self)
        self.operator_leg = OperatorLeg(self)
        self.agencies = AgencyLegs(self, deps.ari, deps.directory, deps.settings.agency,
                                   deps.settings.ari.app, deps.settings.ari.request_timeout)
        self.ending = Ending(self)
        self.task: asyncio.Task[None] | None = None

    # -- outside world -> this call ------------------------------------------------------

    def post(self, item: Item) -> None:
        self.inbox.put_nowait(item)

    def offer(self, operator: str) -> None:
        self.post(Offer(operator))

    def emit(self, type_: CallEventType, **data: Any) -> None:
        self._seq += 1
        self.deps.sink.call_event(
            CallEvent(call_id=self.call_id, seq=self._seq, type=type_, data=data)
        )

    def restart_seq(self, at_least: int) -> None:
        self._seq = max(self._seq, at_least)

    def next_seq(self) -> int:
        return self._seq + 1

    def timer(self, name: str, delay: float) -> None:
        self.cancel_timer(name)
        self._timers[name] = self.clock.call_later(delay, lambda: self.post(Timer(name)))

    def cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def has_timer(self, name: str) -> bool:
        return name in self._timers

    def transition(self, state: CallState, **why: Any) -> None:
        log.info("call_state", state=state.value, was=self.state.value, **why)
        self.state = state

    # -- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id)
        try:
            await self._guarded(self._start)
            while self.state is not CallState.ENDED:
                item = await self.inbox.get()
                await self._guarded(lambda item=item: self._handle(item))  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call_handler_failed")
            await self.ending.hand_back(f"{type(exc).__name__}: {exc}")
        finally:
            self.taken_back.set()
            for handle in self._timers.values():
                handle.cancel()
            self._timers.clear()
            # Offers the queue made after the caller hung up were never rung: free them.
            while not self.inbox.empty():
                item = self.inbox.get_nowait()
                if isinstance(item, Offer):
                    self.deps.desk.cancel_offer(item.operator, self.call_id)
            structlog.contextvars.unbind_contextvars("call_id")
            self._on_done(self.call_id)

    async def _start(self) -> None:
        try:
            if self.resume is None:
                await self.arrival.arrive()
            else:
                await take_back(self, self.resume)
        finally:
            self.taken_back.set()

    async def _guarded(self, step: Callable[[], Any]) -> None:
        """Run one step. A vanished leg is a hang-up; a fault while connected stays logged."""
        try:
            await step()
        except AriError as exc:
            if not channel_gone(exc):
                if self.state is not CallState.CONNECTED:
                    raise
                log.exception("call_handler_failed_while_connected")
                return
            log.info("leg_gone", error=str(exc))
            await self._after_leg_gone()
        except Exception:
            if self.state is not CallState.CONNECTED:
                raise
            # The citizen is talking to a person: never cut that for a fault of ours.
            log.exception("call_handler_failed_while_connected")

    async def _after_leg_gone(self) -> None:
        """Which leg went? The citizen: the call ends as their hang-up. The operator's phone
        being rung or just answered: the caller goes back to the queue."""
        if self.state is CallState.ENDED:
            return
        if not await self.alive(self.call_id):
            await self.ending.end(self.ending.default_disposition(), by="caller")
            return
        if self.state is CallState.RINGING_OPERATOR and self.operator is not None:
            if not await self.alive(self.operator_channel):
                if self.operator_channel == self.operator_leg.answered:
                    await self.operator_leg.left_before_bridge(self.operator)
                else:
                    await self.operator_leg.missed(self.operator, "gone")

    async def alive(self, channel_id: str | None) -> bool:
        if not channel_id:
            return False
        try:
            await self.deps.ari.get_channel(channel_id)
        except AriError as exc:
            return not channel_gone(exc)
        return True

    async def _handle(self, item: Item) -> None:
        if isinstance(item, Offer):
            await self.operator_leg.ring(item.operator)
        elif isinstance(item, Timer):
            self._timers.pop(item.name, None)
            await self._on_timer(item.name)
        elif isinstance(item, Command):
            await self.operator_leg.command(item)
        elif isinstance(item, StopNow):
            await self.ending.on_stop()
        elif isinstance(item, OperatorAway):
            await self.operator_leg.gone_while_away()
        elif isinstance(item, NodeLost):
            await self.ending.node_lost(item.node)
        elif isinstance(item, OverflowNow):
            await self.waiting.overflow(item.reason)
        elif isinstance(item, PlaybackFinished):
            await self._playback_finished(item.playback.id)
        else:
            channel = getattr(item, "channel", None)
            if channel is None:
                return
            leg = legs.parse(channel.id)
            if leg.kind is legs.LegKind.CITIZEN:
                await self._on_citizen(item)
            elif leg.kind is legs.LegKind.OPERATOR:
                await self.operator_leg.on_event(item, channel.id, leg)
            else:
                await self.agencies.on_event(item, leg)

    async def _on_citizen(self, ev: AriEvent) -> None:
        if isinstance(ev, ChannelTalkingStarted):
            await self.waiting.talking()
        elif isinstance(ev, ChannelDtmfReceived):
            if not await self.arrival.dtmf(ev.digit):
                await self.waiting.dtmf(ev.digit)
        elif isinstance(ev, ChannelHangupRequest):
            self.hangup_cause = str(ev.cause or "")
        elif isinstance(ev, (StasisEnd, ChannelDestroyed)):
            if isinstance(ev, ChannelDestroyed):
                self.hangup_cause = ev.cause_txt or str(ev.cause)
            await self.ending.end(self.ending.default_disposition(), by="caller")

    async def _playback_finished(self, playback_id: str) -> None:
        await self.arrival.playback_finished(playback_id)
        await self.waiting.playback_finished(playback_id)
        await self.operator_leg.recall.playback_finished(playback_id)

    async def _on_timer(self, name: str) -> None:
        if name.startswith("blocked"):
            await self.arrival.on_timer(name)
        elif name.startswith("silent"):  # "silent", "silent_prompt_lost"
            await self.waiting.on_timer(name)
        elif name == RING_UNCONFIRMED:
            await self.operator_leg.ring_unconfirmed()
        elif name == DESK_MEDIA:
            await self.operator_leg.media.look()
        elif name.startswith(LINE_UNCONFIRMED):
            await self.agencies.line_unconfirmed(name[len(LINE_UNCONFIRMED):])
