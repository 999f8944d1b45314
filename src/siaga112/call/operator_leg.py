"""The operator's leg: ring the desk phone the queue picked, bridge the citizen with the operator
when they answer (a mixing bridge with a fixed id per call, which agencies join later), read the
operator's codes (*2NN agency, *3CC category, *7 prank, *8 ghost, *6 instant recall and # back
to the call: call/recall.py), and the operator leaving."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import structlog

from siaga112 import legs
from siaga112.agencies import CATEGORIES
from siaga112.ari.client import AriError, Unreachable
from siaga112.ari.models import (
    GONE_WHILE_AWAY,
    AriEvent,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHold,
    ChannelUnhold,
    StasisStart,
)
from siaga112.ari.protocol import Ari
from siaga112.ari.retry import patiently
from siaga112.call.desk_media import DeskMediaWatch
from siaga112.call.errors import (
    CallNotConnected,
    CommandError,
    UnknownAgency,
    UnknownCategory,
)
from siaga112.call.items import Command, CommandKind, CommandResult
from siaga112.call.recall import Recall
from siaga112.codes import CodeKind, CodeReader
from siaga112.model import CallEventType, CallState, Disposition, utcnow

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)

# Q.850 causes of a desk phone that rang out or was not there.
_NO_ANSWER = {0, 16, 18, 19, 21, 127}
_BUSY = 17
DIAL_RETRY_AFTER = 2.0  # s: an operator whose phone the PBX was too slow to dial is free again
RING_UNCONFIRMED = "ring_unconfirmed"  # the timer of a dial whose request had no answer
PHONE_LOST = "phone_lost"  # the pause reason of an operator whose phone went silent in a call


class OperatorLeg:
    def __init__(self, call: CallSession) -> None:
        self.call = call
        self._attempt = 0
        self.answered: str | None = None  # the operator leg that answered (bridging it now)
        self._unconfirmed: str | None = None  # a leg dialled without an answer to the request
        self._codes = CodeReader()
        self.recall = Recall(call)
        self.media = DeskMediaWatch(call)

    async def ring(self, operator: str) -> None:
        call = self.call
        if call.state is not CallState.QUEUED:
            # Offered while we were ending or already ringing: give the operator back.
            call.deps.desk.cancel_offer(operator, call.call_id)
            return
        self._attempt += 1
        channel_id = legs.operator_leg(call.call_id, operator, self._attempt)
        call.operator = operator
        call.operator_channel = channel_id
        call.transition(CallState.RINGING_OPERATOR, operator=operator)
        call.emit(CallEventType.RINGING, operator=operator)
        caller = call.caller.e164 or "anonymous"
        settings = call.deps.settings
        try:
            await call.deps.ari.originate(
                endpoint=f"PJSIP/{operator}", channel_id=channel_id, app=settings.ari.app,
                app_args=f"operator,{call.call_id}", caller_id=f'"112 {caller}" <{caller}>',
                ring_seconds=max(1, round(settings.queue.ring_timeout)),
                variables={"SIAGA112_CALL": call.call_id, "SIAGA112_OPERATOR": operator},
            )
        except Unreachable as exc:
            # Asterisk did not answer in time (overloaded): not the operator's phone, so
            # nobody is paused for it (paused, a burst once left one operator of eight at the
            # desk). The dial may still be carried out late (it waits in Asterisk's queue):
            # the ring stays this call's, its answer is taken, and only if nothing of it has
            # come once it would have rung out is it called not rung. (Taken as not rung at
            # once, the late ring was answered, hung up as too late, and the same phone rung
            # again for the same caller.)
            log.warning("operator_dial_timeout", operator=operator, error=str(exc))
            self._unconfirmed = channel_id
            call.timer(RING_UNCONFIRMED, settings.queue.ring_timeout + settings.ari.request_timeout)
        except AriError as exc:
            log.warning("operator_dial_failed", operator=operator, error=str(exc))
            await self.missed(operator, "unreachable")

    async def ring_unconfirmed(self) -> None:
        """The dial had no answer and nothing of its leg has come since, for as long as the
        phone would have rung: hang the leg up (should the dial be carried out later still)
        and give the caller back their place."""
        call, channel_id = self.call, self._unconfirmed
        self._unconfirmed = None
        if (channel_id is None or call.state is not CallState.RINGING_OPERATOR
                or call.operator_channel != channel_id or self.answered == channel_id
                or call.operator is None):
            return
        log.warning("operator_ring_unconfirmed", operator=call.operator, channel=channel_id)
        operator = call.operator
        await call.ending.hangup_quietly(channel_id)
        self.not_rung(operator)

    def not_rung(self, operator: str) -> None:
        """The caller goes back to their place; the operator is offered calls again a moment
        later (at once, a PBX that refuses connections would be asked again in a tight loop)."""
        call = self.call
        call.operator = None
        call.operator_channel = None
        call_id, desk = call.call_id, call.deps.desk
        call.clock.call_later(DIAL_RETRY_AFTER, lambda: desk.cancel_offer(operator, call_id))
        call.waiting.requeue()

    async def missed(self, operator: str, reason: str) -> None:
        """The desk phone did not take the call: the operator is paused, the caller keeps their
        place in the queue."""
        call = self.call
        call.emit(CallEventType.OPERATOR_NO_ANSWER, operator=operator, reason=reason)
        log.info("operator_no_answer", operator=operator, reason=reason)
        call.operator = None
        call.operator_channel = None
        call.deps.desk.no_answer(operator, call.call_id, reason)
        call.waiting.requeue()

    async def on_event(self, ev: AriEvent, channel_id: str, leg: legs.Leg) -> None:
        call = self.call
        current = channel_id == call.operator_channel
        if isinstance(ev, StasisStart):
            if channel_id == self.answered:
                return  # told twice: by a resync (answered while we were away) and the socket
            if not current or call.state is not CallState.RINGING_OPERATOR:
                await call.ending.hangup_quietly(channel_id)  # answered too late
                return
            self._unconfirmed = None
            call.cancel_timer(RING_UNCONFIRMED)
            await self._connect(channel_id, leg.party)
        elif isinstance(ev, ChannelDtmfReceived) and current:
            await self._dtmf(ev.digit)
        elif isinstance(ev, (ChannelHold, ChannelUnhold)) and current:
            self.media.hold(isinstance(ev, ChannelHold))
        elif isinstance(ev, ChannelDestroyed) and current:
            unconfirmed, self._unconfirmed = self._unconfirmed == channel_id, None
            call.cancel_timer(RING_UNCONFIRMED)
            if call.state is CallState.RINGING_OPERATOR and channel_id == self.answered:
                await self.left_before_bridge(leg.party)
            elif call.state is CallState.RINGING_OPERATOR and (
                    ev.cause_txt == GONE_WHILE_AWAY or (unconfirmed and not ev.cause)):
                # The resync's word for a leg gone while we were away (it may have rung out,
                # or been answered and refused by Asterisk with our application away), or
                # a dial that had no answer and was not carried out: not known to be the
                # phone's fault, so nobody is paused; the caller keeps their place.
                log.info("operator_leg_gone", operator=leg.party, why=ev.cause_txt or "unconfirmed")
                self.not_rung(leg.party)
            elif call.state is CallState.RINGING_OPERATOR:
                reason = "busy" if ev.cause == _BUSY else (
                    "no_answer" if ev.cause in _NO_ANSWER else "failed")
                await self.missed(leg.party, f"{reason}:{ev.cause_txt or ev.cause}")
            elif call.state is CallState.CONNECTED:
                await self.left(leg.party)

    async def _connect(self, channel_id: str, operator: str) -> None:
        call = self.call
        ari = call.deps.ari
        self.answered = channel_id
        await call.waiting.stop_prompt()
        old: str | None = None
        if call.bridge_made:
            # Bridged before (taken back after a restart, or the operator left as it was
            # made): a bridge of its own this time; the old one is ended once the two are
            # through (the operator who answered does not wait for it).
            old, call.bridge_id = call.bridge_id, legs.fresh_call_bridge(call.call_id)
        bridge_id = call.bridge_id
        call.bridge_made = True  # (before the request: a timed-out create may still be made)
        # A PBX slow to answer (a burst) is asked again: the operator has answered and the
        # caller is waiting for exactly this; a hand-back now would lose both.
        await patiently("call bridge", lambda: ari.create_bridge(
            bridge_id, "mixing", f"112 call {call.call_id}"))
        # One request for both: Asterisk moves the citizen out of the holding bridge itself
        # (a Stasis channel joining a bridge departs the one it is in).
        both = [call.call_id, channel_id]
        await patiently("call bridge add", lambda: ari.add_to_bridge(bridge_id, both),
                        done=lambda: _holds(ari, bridge_id, set(both)))
        log.debug("operator_bridged", bridge=bridge_id, operator_channel=channel_id)
        call.waiting.stop()
        call.deps.desk.connected(operator, call.call_id)
        call.transition(CallState.CONNECTED, operator=operator)
        self.media.start()
        waited = (utcnow() - call.arrived_at).total_seconds()
        call.emit(CallEventType.CONNECTED, operator=operator, wait_seconds=round(waited, 3),
                  flags=call.flags)
        if call.deps.metrics is not None:
            call.deps.metrics.call_waited(waited)
        if old is not None:
            await call.ending.destroy_bridge_quietly(old)

    async def left_before_bridge(self, operator: str) -> None:
        """The operator answered and hung up before the call's bridge was made (a saturated
        PBX can take seconds to make it). The phone did answer: the operator is at the desk
        and free again, not paused (paused so, a 1000-caller burst paused all eight and sent
        every caller to the fallback queue); the caller keeps their place."""
        call = self.call
        call.emit(CallEventType.OPERATOR_LEFT, operator=operator, before_bridge=True)
        log.info("operator_left_before_bridge", operator=operator)
        call.operator = None
        call.operator_channel = None
        self.answered = None
        call.deps.desk.cancel_offer(operator, call.call_id)
        call.waiting.requeue()

    async def left(self, operator: str) -> None:
        """The operator hung up. With an agency on the call (or being dialled) the citizen
        stays with it; otherwise the call is over."""
        call = self.call
        call.emit(CallEventType.OPERATOR_LEFT, operator=operator)
        call.deps.desk.released(operator, call.call_id)
        call.operator_channel = None
        if call.agencies.joined() or call.agencies.dialling():
            log.info("operator_left_agency_stays", agencies=call.agencies.joined(),
                     dialling=call.agencies.dialling())
            return
        await call.ending.end(call.ending.default_disposition(), by="operator",
                              hangup_citizen=True)

    async def gone_while_away(self) -> None:
        """The operator's leg ended while we were not connected to Asterisk: we cannot tell
        whether they meant to end the call, so the citizen is not cut off but goes back to
        the front of the queue (unless an agency is with them)."""
        call = self.call
        if call.state is not CallState.CONNECTED or call.operator is None:
            return
        call.emit(CallEventType.OPERATOR_LEFT, operator=call.operator, while_away=True)
        call.deps.desk.released(call.operator, call.call_id)
        await self._citizen_back("operator_gone")

    async def phone_lost(self, silent_for: float, held: bool) -> None:
        """No media has come from the operator's desk phone for the watch's timeout
        (desk_media.py): it lost power or its network, and will send no BYE. Its leg is hung
        up, the operator paused (the phone needs looking at before it takes another call),
        and the citizen goes back to the front of the queue, as for an operator gone while we
        were away (unless an agency is with them)."""
        call = self.call
        operator, channel = call.operator, call.operator_channel
        if call.state is not CallState.CONNECTED or operator is None or channel is None:
            return
        log.warning("operator_phone_lost", operator=operator, silent_for=silent_for, held=held)
        call.emit(CallEventType.OPERATOR_LEFT, operator=operator, phone_lost=True,
                  silent_for=silent_for)
        call.deps.desk.no_answer(operator, call.call_id, PHONE_LOST)
        if call.deps.metrics is not None:
            call.deps.metrics.desk_phone_lost(operator)
        # The dead leg first: should the citizen be gone too (the requeue then fails as a
        # hang-up), it is not left up in the PBX. Its ChannelDestroyed comes after this step
        # (the session's items run one at a time), when it is no longer the call's.
        await call.ending.hangup_quietly(channel)
        await self._citizen_back("operator_phone_lost")

    async def _citizen_back(self, reason: str) -> None:
        call = self.call
        call.operator = None
        call.operator_channel = None
        if call.agencies.joined() or call.agencies.dialling():
            log.info("operator_gone_agency_stays", reason=reason,
                     agencies=call.agencies.joined(), dialling=call.agencies.dialling())
            return
        await call.waiting.requeue_front(reason)

    async def _dtmf(self, digit: str) -> None:
        code = self._codes.feed(digit)
        if code is None:
            return
        log.info("operator_code", code=code.raw, kind=code.kind.value, arg=code.arg)
        by = self.call.operator or "operator"
        if code.kind is CodeKind.AGENCY:
            with contextlib.suppress(UnknownAgency):  # logged, and the operator hears why
                await self.call.agencies.request(code.arg, by=by)
        elif code.kind is CodeKind.CATEGORY:
            self._set_category(code.arg, by)
        elif code.kind is CodeKind.PRANK:
            self.mark(Disposition.PRANK, by)
        elif code.kind is CodeKind.GHOST:
            self.mark(Disposition.GHOST, by)
        elif code.kind is CodeKind.RECALL:
            try:
                await self.recall.start(by)
            except CommandError:  # logged; the operator hears that it cannot be done
                await self.recall.tell_refused()
        elif code.kind is CodeKind.RETURN:
            if self.recall.active:  # '#' outside a recall is an ordinary key press
                await self.recall.back(by)
        else:
            log.warning("operator_code_unknown", code=code.raw)

    def _set_category(self, category: str, by: str) -> bool:
        if category not in CATEGORIES:
            log.warning("category_unknown", category=category)
            return False
        suggested = [a.code for a in self.call.deps.directory.suggest(category)]
        self.call.emit(CallEventType.CATEGORY, category=category, by=by, suggested=suggested)
        return True

    def mark(self, disposition: Disposition, by: str) -> None:
        self.call.disposition = disposition
        self.call.emit(CallEventType.DISPOSITION, disposition=disposition.value, by=by)

    async def command(self, cmd: Command) -> None:
        """From the API: the same actions as the desk phone's codes. The outcome goes back
        through `cmd.done`: a CommandResult, or the CommandError that refused it."""
        call = self.call
        result = CommandResult.OK
        try:
            if cmd.kind is CommandKind.AGENCY:
                if call.state is not CallState.CONNECTED:
                    raise CallNotConnected(call.call_id, call.state)
                result = await call.agencies.request(cmd.arg, by=cmd.by)
            elif cmd.kind is CommandKind.CATEGORY:
                if not self._set_category(cmd.arg, cmd.by):
                    raise UnknownCategory(cmd.arg)
            elif cmd.kind is CommandKind.RECALL:
                await self.recall.start(cmd.by)
                result = CommandResult.RECALLING
            elif cmd.kind is CommandKind.RECALL_RETURN:
                await self.recall.back(cmd.by)
            else:
                self.mark(Disposition(cmd.arg), cmd.by)
        except CommandError as exc:
            log.info("command_refused", kind=cmd.kind.value, arg=cmd.arg, reason=str(exc))
            if cmd.done is not None and not cmd.done.done():
                cmd.done.set_exception(exc)
            return
        if cmd.done is not None and not cmd.done.done():
            cmd.done.set_result(result)


async def _holds(ari: Ari, bridge_id: str, channels: set[str]) -> bool:
    return channels <= set((await ari.get_bridge(bridge_id)).channels)
