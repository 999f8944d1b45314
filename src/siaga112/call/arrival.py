"""Arrival and screening: answer the citizen, tag the call, check the caller ID against the
blocklist. A blocked caller hears the whole announcement; the wait for the bypass digit starts
when it has finished playing (PlaybackFinished), so its length is the prompt's own. The digit
works at any moment, during the announcement or after it, and puts the caller in the priority
lane."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from siaga112.ari.client import AriError, NotFound, channel_gone
from siaga112.ari.retry import patiently
from siaga112.model import CallEventType, CallState, Disposition

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)

# A prompt whose PlaybackFinished never came (a lost event) counts as finished after this long.
# Every prompt is far shorter; this only keeps a caller from waiting for an event that is lost.
PROMPT_LOST_AFTER = 60.0
# After the strict announcement (no way through) the line is closed this long after it ends.
STRICT_HANGUP_AFTER = 1.0


class Arrival:
    def __init__(self, call: CallSession) -> None:
        self.call = call
        self.announcement: str | None = None  # the blocked announcement's playback id
        self.announced = False  # it has finished playing

    async def arrive(self) -> None:
        call = self.call
        ari = call.deps.ari
        call.emit(
            CallEventType.ARRIVED,
            caller_raw=call.caller.raw, caller=call.caller.e164,
            caller_problem=call.caller.problem.value, line_type=call.line_type.value,
            trunk=call.trunk, channel_id=call.call_id,
            **({"geo_format": call.geo_format} if call.geo_format else {}),
        )
        log.info("call_arrived", caller=call.caller.e164, caller_raw=call.caller.raw,
                 problem=call.caller.problem.value, line=call.line_type.value, trunk=call.trunk)
        # The dialplan answers before Stasis(): the StasisStart then finds the channel Up, and
        # the answer never waited for the daemon. A dialplan that does not is answered here.
        by_dialplan = call.citizen.state == "Up"
        if not by_dialplan:
            await ari.answer(call.call_id)
        routed = call.routed
        # The CPU wait is read before the clock (and after it at routing), so that it always
        # lies within the take-in it is a part of.
        waited = call.deps.cpu.waited()
        latency = time.monotonic() - routed.at
        if call.deps.metrics is not None:
            call.deps.metrics.call_answered(latency)
        # The take-in, and of it the time the daemon was ready and no core was free
        # (call/cpu_wait.py); the StasisStart's age when routed, by Asterisk's clock.
        figures: dict[str, float | str] = {
            "latency_ms": round(latency * 1000, 2),
            "answered_by": "dialplan" if by_dialplan else "daemon",
        }
        if waited is not None and routed.cpu_waited is not None:
            figures["cpu_wait_ms"] = round((waited - routed.cpu_waited) / 1e6, 2)
        if routed.event_age_ms is not None:
            figures["event_age_ms"] = routed.event_age_ms
        call.emit(CallEventType.ANSWERED, **figures)
        log.debug("call_answered", latency_ms=round(latency * 1000, 2))
        verdict = call.deps.screening.check(call.caller.e164)
        call.transition(CallState.SCREENED, blocked=verdict.blocked, reason=verdict.reason)
        call.emit(CallEventType.SCREENED, blocked=verdict.blocked, reason=verdict.reason)
        if verdict.blocked:
            await self._announce_blocked()
            return
        await call.waiting.start()

    async def _announce_blocked(self) -> None:
        call = self.call
        screening = call.deps.settings.screening
        call.disposition = Disposition.BLOCKED
        prompt = "blocked-strict" if screening.strict else "blocked"
        call.transition(CallState.REJECTED, strict=screening.strict,
                        waiting_for=None if screening.strict else screening.bypass_digit)
        self.announcement = playback = f"{call.call_id}-blocked"
        # Asked again while a saturated PBX does not answer in time (a prank flood is when it
        # is): a play that timed out handed the prank call back to the operators' queue.
        await patiently(
            "blocked announcement",
            lambda: call.deps.ari.play(call.call_id, f"sound:siaga112/{prompt}", playback),
            done=lambda: self._playing(playback))
        call.emit(CallEventType.BLOCKED_ANNOUNCED, strict=screening.strict)
        call.timer("blocked_prompt_lost", PROMPT_LOST_AFTER)

    async def _playing(self, playback_id: str) -> bool:
        """The play request that timed out was carried out (it plays, or is queued to)."""
        try:
            await self.call.deps.ari.get_playback(playback_id)
        except NotFound:
            return False
        return True

    async def playback_finished(self, playback_id: str) -> None:
        if playback_id == self.announcement and self.call.state is CallState.REJECTED:
            self._announcement_over()

    def _announcement_over(self) -> None:
        call = self.call
        call.cancel_timer("blocked_prompt_lost")
        self.announcement = None
        self.announced = True
        screening = call.deps.settings.screening
        if screening.strict:
            call.timer("blocked_hangup", STRICT_HANGUP_AFTER)
        else:
            log.info("blocked_announced_waiting", seconds=screening.bypass_wait)
            call.timer("blocked_bypass_wait", screening.bypass_wait)

    async def on_timer(self, name: str) -> None:
        call = self.call
        if call.state is not CallState.REJECTED:
            return
        if name == "blocked_prompt_lost":
            log.warning("prompt_finish_lost", prompt="blocked")
            self._announcement_over()
        elif name in ("blocked_bypass_wait", "blocked_hangup"):
            await call.ending.end(Disposition.BLOCKED, by="system", hangup_citizen=True)

    async def dtmf(self, digit: str) -> bool:
        """The bypass digit from a blocked caller. True if the digit was this part's."""
        call = self.call
        if call.state is not CallState.REJECTED:
            return False
        screening = call.deps.settings.screening
        if screening.strict or digit != screening.bypass_digit:
            return True
        for name in ("blocked_prompt_lost", "blocked_bypass_wait"):
            call.cancel_timer(name)
        call.disposition = None
        call.emit(CallEventType.BYPASS, digit=digit, during_announcement=not self.announced)
        log.info("blocked_bypass", during_announcement=not self.announced)
        playback, self.announcement = self.announcement, None
        if playback is not None:
            await stop_playback(call, playback)
        call.priority = True
        if "blocked_bypass" not in call.flags:
            call.flags.append("blocked_bypass")
        await call.waiting.enqueue()
        return True


async def stop_playback(call: CallSession, playback_id: str) -> None:
    """Cut a prompt the caller may still hear. (A channel's own playback holds the channel:
    until it ends the caller cannot leave the holding bridge for an operator.)"""
    try:
        await call.deps.ari.stop_playback(playback_id)
    except AriError:
        pass  # it had ended


async def tag(call: CallSession, **variables: str) -> None:
    """Channel variables are the call's tags in Asterisk, read back by the resync: only what
    Asterisk cannot tell by itself (the priority lane and the flags; the arrival time is the
    channel's own creation time). Set side by side."""
    names = list(variables)
    results = await asyncio.gather(
        *(call.deps.ari.set_var(call.call_id, n, variables[n]) for n in names),
        return_exceptions=True,
    )
    for name, result in zip(names, results, strict=True):
        if isinstance(result, AriError):
            if channel_gone(result):
                raise result
            log.warning("tag_failed", variable=name, error=str(result))
        elif isinstance(result, BaseException):
            raise result
