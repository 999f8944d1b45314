"""The waiting caller: in the holding bridge and the queue, with the prompts a waiting caller
hears. A caller who stays silent hears, once, how to ask for help without speaking (press 5
twice); after that prompt has played they stay queued, flagged `silent`, so the operator who
answers knows. The system never hangs up a waiting caller and never marks a call a ghost call:
only an operator does (*8). A caller nobody can answer goes to the overflow target."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from siaga112 import legs
from siaga112.ari.client import AriError, channel_gone
from siaga112.call.arrival import PROMPT_LOST_AFTER, stop_playback, tag
from siaga112.model import CallEventType, CallState, Disposition
from siaga112.queue import Waiter
from siaga112.settings import SilenceSettings

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)



class Waiting:
    def __init__(self, call: CallSession) -> None:
        self.call = call
        self.waiter: Waiter | None = None
        self.talked = False
        self.prompt: str | None = None  # playback id of a prompt that may still be playing
        self._silent_prompted = False
        self._digits = ""

    # -- joining the queue ------------------------------------------------------------------

    async def start(self) -> None:
        """A screened caller who was not blocked: listen for silence, then queue."""
        await self._start_silence_check()
        await self.enqueue()

    async def enqueue(self, front: bool = False) -> None:
        call = self.call
        if self.waiter is None:
            self.waiter = Waiter(
                call_id=call.call_id, caller=call.caller.e164 or call.caller.raw or None,
                line_type=call.line_type, offer=call.offer, since=call.arrived_at,
                priority=call.priority, flags=call.flags,
            )
        self.waiter.priority = call.priority
        await call.deps.holding.add(call.call_id)
        call.transition(CallState.QUEUED, front=front)
        pos = call.deps.queue.enqueue(self.waiter, front=front)
        call.emit(CallEventType.QUEUED, position=pos, priority=call.priority, flags=call.flags)
        if call.priority or call.flags:  # no tag reads as the default: no round trip for it
            await tag(call, SIAGA112_PRIORITY="1" if call.priority else "0",
                      SIAGA112_FLAGS=",".join(call.flags))

    def requeue(self) -> None:
        """Back in the queue after an operator's phone did not take the call: the same place."""
        self.call.transition(CallState.QUEUED, requeued=True)
        if self.waiter is not None:
            self.call.deps.queue.enqueue(self.waiter)

    async def requeue_front(self, reason: str) -> None:
        """The operator is gone while we were away: first in line again, and the caller hears
        that they are waiting for an operator."""
        call = self.call
        call.emit(CallEventType.REQUEUED, reason=reason)
        log.info("call_requeued", reason=reason)
        try:
            await call.deps.ari.destroy_bridge(call.bridge_id)
        except AriError as exc:
            if not channel_gone(exc) and exc.status != 404:
                log.info("call_bridge_not_destroyed", error=str(exc))
        await self.enqueue(front=True)
        self.prompt = f"{call.call_id}-wait"
        try:
            await call.deps.ari.play(call.call_id, "sound:siaga112/please-wait", self.prompt)
        except AriError as exc:
            log.info("prompt_failed", prompt="please-wait", error=str(exc))

    def flag(self, flag: str, priority: bool = False) -> None:
        call = self.call
        if priority:
            call.priority = True
        if flag not in call.flags:
            call.flags.append(flag)
        if call.state is CallState.QUEUED:
            if priority:
                call.deps.queue.promote(call.call_id, flag)
            else:
                call.deps.queue.flag(call.call_id, flag)
            call.emit(CallEventType.QUEUED, position=call.deps.queue.position(call.call_id),
                      priority=call.priority, flags=call.flags)
        # A caller being rung to an operator keeps going; the flag is in the record.

    # -- silence ----------------------------------------------------------------------------

    async def _start_silence_check(self) -> None:
        """The dialplan has set TALK_DETECT before Stasis() (with the thresholds the daemon
        put in the PBX global SIAGA112_TALK_DETECT, see talk_detect_global): the silence
        timer is all that is left to start."""
        s = self.call.deps.settings.silence
        if not s.enabled:
            return
        self.call.timer("silent", s.silent_after)

    async def on_timer(self, name: str) -> None:
        call = self.call
        if name == "silent" and not self.talked and call.state is CallState.QUEUED:
            self._silent_prompted = True
            self._digits = ""
            call.emit(CallEventType.SILENT_PROMPT)
            log.info("silent_prompt")
            self.prompt = f"{call.call_id}-silent"
            try:
                await call.deps.ari.play(call.call_id, "sound:siaga112/silent-check", self.prompt)
            except AriError as exc:
                if channel_gone(exc):
                    raise
                # A help, not a step the call needs: a PBX too busy to play it does not
                # make a fault (and a hand-back) of a caller who waits quietly.
                log.warning("prompt_failed", prompt="silent-check", error=str(exc))
                await self.playback_finished(self.prompt)
                return
            call.timer("silent_prompt_lost", PROMPT_LOST_AFTER)
        elif name == "silent_prompt_lost" and self.prompt == f"{call.call_id}-silent":
            await self.playback_finished(self.prompt)

    async def playback_finished(self, playback_id: str) -> None:
        call = self.call
        if playback_id != self.prompt:
            return
        self.prompt = None
        if playback_id == f"{call.call_id}-silent":
            call.cancel_timer("silent_prompt_lost")
            if not self.talked and "silent" not in call.flags:
                log.info("caller_silent")
                self.flag("silent")

    async def talking(self) -> None:
        if not self.talked:
            log.debug("caller_speaks")
        self.talked = True
        self.call.cancel_timer("silent")
        if self._silent_prompted:
            await self.stop_prompt()

    async def dtmf(self, digit: str) -> None:
        self._digits = (self._digits + digit)[-4:]
        if self._silent_prompted and self._digits.endswith("55"):
            self._silent_prompted = False
            self.call.emit(CallEventType.SILENT_EMERGENCY)
            log.info("silent_emergency")
            self.flag("silent_emergency", priority=True)
            await self.stop_prompt()

    async def stop_prompt(self) -> None:
        playback, self.prompt = self.prompt, None
        self.call.cancel_timer("silent_prompt_lost")
        if playback is not None:
            await stop_playback(self.call, playback)

    def stop(self) -> None:
        self.call.cancel_timer("silent")
        self.call.cancel_timer("silent_prompt_lost")

    # -- nobody can answer --------------------------------------------------------------------

    async def overflow(self, reason: str) -> None:
        """To the overflow target: the dialplan's fallback queue (every desk phone rings) or a
        dial string to a backup centre, which falls back to that queue if it does not answer."""
        call = self.call
        if call.state is not CallState.QUEUED:
            return
        target = call.deps.settings.queue.overflow
        call.deps.queue.remove(call.call_id)
        await self.stop_prompt()
        self.stop()
        call.emit(CallEventType.OVERFLOW, reason=reason, target=target)
        log.warning("call_overflow", reason=reason, target=target)
        context = legs.FALLBACK_CONTEXT
        if target != "fallback":
            await call.deps.ari.set_var(call.call_id, "SIAGA112_OVERFLOW_DIAL", target)
            context = legs.OVERFLOW_CONTEXT
        await call.ending.leave_to_dialplan(context, Disposition.FALLBACK, f"overflow: {reason}")


def talk_detect_global(settings: SilenceSettings) -> str:
    """The value of the PBX global SIAGA112_TALK_DETECT that the dialplan's [emergency]
    context gives TALK_DETECT(set) before Stasis(): "silence_ms,threshold", or "off"."""
    if not settings.enabled:
        return "off"
    return f"{settings.dsp_silence_ms},{settings.dsp_talking_threshold}"

