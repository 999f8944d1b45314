"""One citizen's call, from arrival to hang-up: one task per call, one event at a time, in order.

States: arrived -> screened -> queued -> ringing_operator -> connected -> ended, with the
rejected branch for a blocked number that does not ask through. Every transition is logged and
emitted as a CallEvent (records and MQTT). Any exception hands the call back to the dialplan's
fallback queue (fail open); a 404 from Asterisk means a leg has gone and is not a fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from siaga112 import legs
from siaga112.agencies import Directory
from siaga112.agency_bridge import AgencyLegs
from siaga112.ari.client import AriClient, AriError, NotFound
from siaga112.ari.models import (
    AriEvent,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelTalkingStarted,
    StasisEnd,
    StasisStart,
)
from siaga112.callerid import CallerId, normalise
from siaga112.codes import CodeKind, CodeReader
from siaga112.holding import HoldingBridge
from siaga112.model import CallEvent, CallEventType, CallState, Disposition, LineType, utcnow
from siaga112.operator_bridge import connect_operator
from siaga112.operators import OperatorDesk
from siaga112.queue import CallQueue, Waiter
from siaga112.screening import Screening
from siaga112.settings import Settings
from siaga112.sinks import EventSink

log = structlog.get_logger(__name__)

FALLBACK_CONTEXT = "fallback"
HAND_BACK_TRIES = 5  # over about 4 s


class CallMetrics(Protocol):
    def call_answered(self, latency_seconds: float) -> None: ...
    def call_waited(self, seconds: float) -> None: ...
    def call_ended(self, outcome: Disposition) -> None: ...


@dataclass(frozen=True)
class CallDeps:
    ari: AriClient
    settings: Settings
    screening: Screening
    queue: CallQueue
    desk: OperatorDesk
    sink: EventSink
    directory: Directory
    holding: HoldingBridge
    metrics: CallMetrics | None = None


# -- items a session handles besides ARI events --------------------------------------------


@dataclass(frozen=True)
class Offer:
    operator: str


@dataclass(frozen=True)
class Timer:
    name: str


@dataclass(frozen=True)
class Command:
    """From the HTTP API or the CLI: bring an agency, mark the call."""

    kind: str
    arg: str = ""
    by: str = "api"
    done: asyncio.Future[str] | None = None


@dataclass
class Resume:
    """What the resync found in Asterisk for a call that was live when we (re)connected."""

    state: CallState
    since: datetime | None = None
    priority: bool = False
    flags: list[str] = field(default_factory=list)
    operator: str | None = None
    operator_channel: str | None = None
    agency_channels: dict[str, str] = field(default_factory=dict)  # channel id -> dispatch id


Item = AriEvent | Offer | Timer | Command


class CallSession:
    def __init__(
        self,
        citizen: Channel,
        deps: CallDeps,
        on_done: Callable[[str], None],
        resume: Resume | None = None,
        stasis_at: float | None = None,
    ) -> None:
        self.call_id = citizen.id
        self.citizen = citizen
        self.deps = deps
        self.state = CallState.ARRIVED
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        self._on_done = on_done
        self._resume = resume
        self._stasis_at = stasis_at or time.monotonic()
        self._seq = 0
        self._timers: dict[str, asyncio.TimerHandle] = {}
        vars_ = citizen.channelvars or {}
        line = vars_.get("SIAGA112_LINE", "")
        known = {t.value for t in LineType}
        self.line_type = LineType(line) if line in known else LineType.UNKNOWN
        self.trunk = vars_.get("SIAGA112_TRUNK", "")
        self.caller: CallerId = normalise(citizen.caller.number)
        self.arrived_at = citizen.creationtime or utcnow()
        self.waiter: Waiter | None = None
        self.priority = False
        self.flags: list[str] = []
        self.operator: str | None = None
        self.operator_channel: str | None = None
        self._op_attempt = 0
        self._op_codes = CodeReader()
        self._citizen_digits = ""
        self._talked = False
        self._silent_prompted = False
        self._prompt: str | None = None  # playback id of a prompt that may still be playing
        self.disposition: Disposition | None = None
        self._hangup_cause = ""
        self.agencies = AgencyLegs(self, deps.ari, deps.directory, deps.settings.agency,
                                   deps.settings.ari.app)
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

    def timer(self, name: str, delay: float) -> None:
        self.cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self.post, Timer(name))

    def cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def transition(self, state: CallState, **why: Any) -> None:
        log.info("call_state", state=state.value, was=self.state.value, **why)
        self.state = state

    # -- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id)
        try:
            if self._resume is None:
                await self._arrive()
            else:
                await self._take_back(self._resume)
            while self.state is not CallState.ENDED:
                item = await self.inbox.get()
                try:
                    await self._handle(item)
                except NotFound as exc:
                    # A leg hung up while we worked on it: its own events follow.
                    log.info("leg_gone", error=str(exc))
                except Exception:
                    if self.state is not CallState.CONNECTED:
                        raise
                    # The citizen is talking to a person: never cut that for a fault of ours.
                    log.exception("call_handler_failed_while_connected")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call_handler_failed")
            await self._hand_back(f"{type(exc).__name__}: {exc}")
        finally:
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

    async def _handle(self, item: Item) -> None:
        if isinstance(item, Offer):
            await self._ring_operator(item.operator)
        elif isinstance(item, Timer):
            await self._on_timer(item.name)
        elif isinstance(item, Command):
            await self._on_command(item)
        else:
            channel = getattr(item, "channel", None)
            if channel is None:
                return
            leg = legs.parse(channel.id)
            if leg.kind is legs.LegKind.CITIZEN:
                await self._on_citizen(item)
            elif leg.kind is legs.LegKind.OPERATOR:
                await self._on_operator(item, channel.id, leg)
            else:
                await self.agencies.on_event(item, leg)

    # -- arrival, screening, queue --------------------------------------------------------

    async def _arrive(self) -> None:
        ari = self.deps.ari
        self.emit(
            CallEventType.ARRIVED,
            caller_raw=self.caller.raw,
            caller=self.caller.e164,
            caller_problem=self.caller.problem.value,
            line_type=self.line_type.value,
            trunk=self.trunk,
            channel_id=self.call_id,
        )
        log.info("call_arrived", caller=self.caller.e164, caller_raw=self.caller.raw,
                 problem=self.caller.problem.value, line=self.line_type.value, trunk=self.trunk)
        if self.citizen.state != "Up":
            await ari.answer(self.call_id)
        latency = time.monotonic() - self._stasis_at
        if self.deps.metrics is not None:
            self.deps.metrics.call_answered(latency)
        self.emit(CallEventType.ANSWERED, latency_ms=round(latency * 1000, 2))
        log.info("call_answered", latency_ms=round(latency * 1000, 2))
        await self._tag(SIAGA112_ARRIVED=self.arrived_at.isoformat())
        verdict = self.deps.screening.check(self.caller.e164)
        self.transition(CallState.SCREENED, blocked=verdict.blocked, reason=verdict.reason)
        self.emit(CallEventType.SCREENED, blocked=verdict.blocked, reason=verdict.reason)
        if verdict.blocked:
            await self._blocked()
            return
        await self._start_silence_check()
        await self._enqueue()

    async def _blocked(self) -> None:
        screening = self.deps.settings.screening
        self.disposition = Disposition.BLOCKED
        if screening.strict:
            self.transition(CallState.REJECTED, strict=True)
            await self.deps.ari.play(self.call_id, "sound:siaga112/blocked-strict",
                                     f"{self.call_id}-blocked")
            self.timer("blocked_hangup", 8.0)
            return
        self.transition(CallState.REJECTED, strict=False, waiting_for=screening.bypass_digit)
        self._prompt = f"{self.call_id}-blocked"
        await self.deps.ari.play(self.call_id, "sound:siaga112/blocked", self._prompt)
        self.emit(CallEventType.BLOCKED_ANNOUNCED)
        self.timer("bypass", screening.bypass_wait)

    async def _enqueue(self, front: bool = False) -> None:
        if self.waiter is None:
            self.waiter = Waiter(
                call_id=self.call_id, caller=self.caller.e164 or self.caller.raw or None,
                line_type=self.line_type, offer=self.offer, since=self.arrived_at,
                priority=self.priority, flags=self.flags,
            )
        await self.deps.holding.add(self.call_id)
        self.transition(CallState.QUEUED)
        pos = self.deps.queue.enqueue(self.waiter)
        self.emit(CallEventType.QUEUED, position=pos, priority=self.priority, flags=self.flags)
        await self._tag(SIAGA112_PRIORITY="1" if self.priority else "0",
                        SIAGA112_FLAGS=",".join(self.flags))

    def _promote(self, flag: str) -> None:
        self.priority = True
        if flag not in self.flags:
            self.flags.append(flag)
        if self.state is CallState.QUEUED:
            self.deps.queue.promote(self.call_id, flag)
            self.emit(CallEventType.QUEUED, position=self.deps.queue.position(self.call_id),
                      priority=True, flags=self.flags)
        # A caller being rung to an operator keeps going; the flag is in the record.

    # -- silent-call check -----------------------------------------------------------------

    async def _start_silence_check(self) -> None:
        s = self.deps.settings.silence
        if not s.enabled:
            return
        await self.deps.ari.set_var(self.call_id, "TALK_DETECT(set)",
                                    f"{s.dsp_silence_ms},{s.dsp_talking_threshold}")
        self.timer("silent", s.silent_after)

    async def _silent_prompt(self) -> None:
        self._silent_prompted = True
        self._citizen_digits = ""
        self.emit(CallEventType.SILENT_PROMPT)
        log.info("silent_prompt")
        self._prompt = f"{self.call_id}-silent"
        await self.deps.ari.play(self.call_id, "sound:siaga112/silent-check", self._prompt)
        self.timer("silent_keys", self.deps.settings.silence.keys_wait)

    def _stop_silence_check(self) -> None:
        self.cancel_timer("silent")
        self.cancel_timer("silent_keys")

    async def _stop_prompt(self) -> None:
        """Cut the prompt the caller may still be hearing. A channel's own playback holds the
        channel: until it ends the caller cannot leave the holding bridge for an operator."""
        playback, self._prompt = self._prompt, None
        if playback is None:
            return
        try:
            await self.deps.ari.stop_playback(playback)
        except AriError:
            pass  # it had ended

    # -- the citizen's leg ---------------------------------------------------------------

    async def _on_citizen(self, ev: AriEvent) -> None:
        if isinstance(ev, ChannelTalkingStarted):
            if not self._talked:
                log.info("caller_speaks")
            self._talked = True
            self._stop_silence_check()
            if self._silent_prompted:
                await self._stop_prompt()
        elif isinstance(ev, ChannelDtmfReceived):
            await self._citizen_dtmf(ev.digit)
        elif isinstance(ev, ChannelHangupRequest):
            self._hangup_cause = str(ev.cause or "")
        elif isinstance(ev, (StasisEnd, ChannelDestroyed)):
            if isinstance(ev, ChannelDestroyed):
                self._hangup_cause = ev.cause_txt or str(ev.cause)
            await self._end(self._default_disposition(), by="caller")

    async def _citizen_dtmf(self, digit: str) -> None:
        self._citizen_digits = (self._citizen_digits + digit)[-4:]
        screening = self.deps.settings.screening
        if self.state is CallState.REJECTED and not screening.strict:
            if digit == screening.bypass_digit:
                self.cancel_timer("bypass")
                self.disposition = None
                self.emit(CallEventType.BYPASS, digit=digit)
                log.info("blocked_bypass")
                await self._stop_prompt()
                self.priority = True
                self.flags.append("blocked_bypass")
                await self._enqueue()
            return
        if self._silent_prompted and self._citizen_digits.endswith("55"):
            self._stop_silence_check()
            self._silent_prompted = False
            self.emit(CallEventType.SILENT_EMERGENCY)
            log.info("silent_emergency")
            self._promote("silent_emergency")
            await self._stop_prompt()

    # -- ringing and connecting an operator -------------------------------------------------

    async def _ring_operator(self, operator: str) -> None:
        if self.state is not CallState.QUEUED:
            # Offered while we were ending or already ringing: give the operator back.
            self.deps.desk.cancel_offer(operator, self.call_id)
            return
        self._op_attempt += 1
        channel_id = legs.operator_leg(self.call_id, operator, self._op_attempt)
        self.operator = operator
        self.operator_channel = channel_id
        self.transition(CallState.RINGING_OPERATOR, operator=operator)
        self.emit(CallEventType.RINGING, operator=operator)
        caller = self.caller.e164 or "anonymous"
        try:
            await self.deps.ari.originate(
                endpoint=f"PJSIP/{operator}",
                channel_id=channel_id,
                app=self.deps.settings.ari.app,
                app_args=f"operator,{self.call_id}",
                caller_id=f'"112 {caller}" <{caller}>',
                ring_seconds=max(1, round(self.deps.settings.queue.ring_timeout)),
                variables={"SIAGA112_CALL": self.call_id, "SIAGA112_OPERATOR": operator},
            )
        except AriError as exc:
            log.warning("operator_dial_failed", operator=operator, error=str(exc))
            await self._operator_missed(operator, "unreachable")

    async def _operator_missed(self, operator: str, reason: str) -> None:
        self.emit(CallEventType.OPERATOR_NO_ANSWER, operator=operator, reason=reason)
        log.info("operator_no_answer", operator=operator, reason=reason)
        self.operator = None
        self.operator_channel = None
        self.deps.desk.no_answer(operator, self.call_id, reason)
        self.transition(CallState.QUEUED, requeued=True)
        if self.waiter is not None:
            self.deps.queue.enqueue(self.waiter)

    async def _on_operator(self, ev: AriEvent, channel_id: str, leg: legs.Leg) -> None:
        current = channel_id == self.operator_channel
        if isinstance(ev, StasisStart):
            if not current or self.state is not CallState.RINGING_OPERATOR:
                await self._hangup_quietly(channel_id)  # answered too late: caller gone or moved
                return
            await self._stop_prompt()
            await connect_operator(self.deps.ari, self.deps.holding, self.call_id, channel_id)
            self._stop_silence_check()
            self.deps.desk.connected(leg.party, self.call_id)
            self.transition(CallState.CONNECTED, operator=leg.party)
            waited = (utcnow() - self.arrived_at).total_seconds()
            self.emit(CallEventType.CONNECTED, operator=leg.party, wait_seconds=round(waited, 3))
            if self.deps.metrics is not None:
                self.deps.metrics.call_waited(waited)
        elif isinstance(ev, ChannelDtmfReceived) and current:
            await self._operator_dtmf(ev.digit)
        elif isinstance(ev, ChannelDestroyed) and current:
            if self.state is CallState.RINGING_OPERATOR:
                reason = "no_answer" if ev.cause in (0, 16, 18, 19, 21, 127) else "failed"
                if ev.cause == 17:
                    reason = "busy"
                await self._operator_missed(leg.party, f"{reason}:{ev.cause_txt or ev.cause}")
            elif self.state is CallState.CONNECTED:
                await self._operator_left(leg.party)

    async def _operator_left(self, operator: str) -> None:
        self.emit(CallEventType.OPERATOR_LEFT, operator=operator)
        self.deps.desk.released(operator, self.call_id)
        self.operator_channel = None
        if self.agencies.joined() or self.agencies.dialling():
            # The citizen stays with the agencies, also with one whose duty line still rings.
            log.info("operator_left_agency_stays", agencies=self.agencies.joined(),
                     dialling=self.agencies.dialling())
            return
        await self._end(self._default_disposition(), by="operator", hangup_citizen=True)

    async def _operator_dtmf(self, digit: str) -> None:
        code = self._op_codes.feed(digit)
        if code is None:
            return
        log.info("operator_code", code=code.raw, kind=code.kind.value, arg=code.arg)
        by = self.operator or "operator"
        if code.kind is CodeKind.AGENCY:
            await self.agencies.request(code.arg, by=by)
        elif code.kind is CodeKind.CATEGORY:
            self._set_category(code.arg, by)
        elif code.kind is CodeKind.PRANK:
            self._mark(Disposition.PRANK, by)
        elif code.kind is CodeKind.GHOST:
            self._mark(Disposition.GHOST, by)
        else:
            log.warning("operator_code_unknown", code=code.raw)

    def _set_category(self, category: str, by: str) -> bool:
        from siaga112.agencies import CATEGORIES

        if category not in CATEGORIES:
            log.warning("category_unknown", category=category)
            return False
        suggested = [a.code for a in self.deps.directory.suggest(category)]
        self.emit(CallEventType.CATEGORY, category=category, by=by, suggested=suggested)
        return True

    def _mark(self, disposition: Disposition, by: str) -> None:
        self.disposition = disposition
        self.emit(CallEventType.DISPOSITION, disposition=disposition.value, by=by)

    async def agency_left(self) -> None:
        """An agency hung up or could not be reached. With neither operator nor agency left
        (nor one being dialled), the citizen is alone."""
        if self.operator_channel is None and not (self.agencies.joined()
                                                  or self.agencies.dialling()):
            await self._end(self._default_disposition(), by="agency", hangup_citizen=True)

    # -- timers and commands -------------------------------------------------------------

    async def _on_timer(self, name: str) -> None:
        self._timers.pop(name, None)
        if name == "bypass" and self.state is CallState.REJECTED:
            await self._end(Disposition.BLOCKED, by="system", hangup_citizen=True)
        elif name == "blocked_hangup":
            await self._end(Disposition.BLOCKED, by="system", hangup_citizen=True)
        elif name == "silent" and not self._talked and self.state is CallState.QUEUED:
            await self._silent_prompt()
        elif name == "silent_keys" and not self._talked and self.state is CallState.QUEUED:
            log.info("ghost_call")
            await self._end(Disposition.GHOST, by="system", hangup_citizen=True)

    async def _on_command(self, cmd: Command) -> None:
        result = "ok"
        if cmd.kind == "agency":
            if self.state is not CallState.CONNECTED:
                result = f"call is {self.state.value}, not connected"
            else:
                result = await self.agencies.request(cmd.arg, by=cmd.by)
        elif cmd.kind == "category":
            result = "ok" if self._set_category(cmd.arg, cmd.by) else "unknown category"
        elif cmd.kind == "disposition":
            self._mark(Disposition(cmd.arg), cmd.by)
        else:
            result = f"unknown command {cmd.kind}"
        if cmd.done is not None and not cmd.done.done():
            cmd.done.set_result(result)

    # -- taking a call back after a (re)connect ------------------------------------------------

    async def _take_back(self, r: Resume) -> None:
        self.emit(CallEventType.RESYNCED, state=r.state.value, operator=r.operator)
        log.info("call_taken_back", state=r.state.value, operator=r.operator)
        self.priority = r.priority
        self.flags = list(r.flags)
        if r.since is not None:
            self.arrived_at = r.since
        self._talked = True  # no silent check for a call we take back
        if r.state is CallState.CONNECTED:
            self.state = CallState.CONNECTED
            self.operator = r.operator
            self.operator_channel = r.operator_channel
            if r.operator is not None:
                self.deps.desk.connected(r.operator, self.call_id)
            for ch, dispatch_id in r.agency_channels.items():
                self.agencies.adopt(ch, dispatch_id)
            return
        await self._enqueue()

    # -- the end -------------------------------------------------------------------------

    def _default_disposition(self) -> Disposition:
        if self.disposition is not None:
            return self.disposition
        if self.state in (CallState.CONNECTED,):
            return Disposition.GENUINE
        if self.state is CallState.REJECTED:
            return Disposition.BLOCKED
        return Disposition.ABANDONED

    async def _end(self, disposition: Disposition, by: str, hangup_citizen: bool = False) -> None:
        if self.state is CallState.ENDED:
            return
        was = self.state
        self.transition(CallState.ENDED, disposition=disposition.value, by=by)
        self.state = CallState.ENDED
        self.deps.queue.remove(self.call_id)
        if self.operator is not None and was is CallState.RINGING_OPERATOR:
            # The caller left while the desk phone rang: no call to wrap up.
            self.deps.desk.cancel_offer(self.operator, self.call_id)
        elif self.operator is not None and was is CallState.CONNECTED:
            self.deps.desk.released(self.operator, self.call_id)
        legs_to_close = [c for c in [self.operator_channel, *self.agencies.channels()] if c]
        if hangup_citizen:
            legs_to_close.append(self.call_id)
        for channel_id in legs_to_close:
            await self._hangup_quietly(channel_id)
        try:
            await self.deps.ari.destroy_bridge(legs.call_bridge(self.call_id))
        except AriError:
            pass
        self.emit(CallEventType.ENDED, disposition=disposition.value, hangup_by=by,
                  cause=self._hangup_cause)
        if self.deps.metrics is not None:
            self.deps.metrics.call_ended(disposition)
        if self.deps.settings.recording.enabled:
            asyncio.get_running_loop().call_later(1.0, self._recorded)

    def _recorded(self, last_size: int = -1, looks: int = 10) -> None:
        """Note the recording in the record once MixMonitor is done with it: the file is there
        and its size held still for a second (MixMonitor's thread writes on after hang-up)."""
        path = Path(self.deps.settings.recording.dir) / f"{self.call_id}.wav"
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        if (size < 0 or size != last_size) and looks > 1:
            asyncio.get_running_loop().call_later(1.0, self._recorded, size, looks - 1)
            return
        if size < 0:
            log.warning("recording_missing", path=str(path), call_id=self.call_id)
            return
        seconds = max(0.0, (size - 44) / 16000)  # 8 kHz, 16-bit mono WAV
        self.deps.sink.call_event(
            CallEvent(call_id=self.call_id, seq=self._seq + 1, type=CallEventType.RECORDING,
                      data={"path": str(path), "seconds": round(seconds, 2)})
        )

    async def _hand_back(self, reason: str) -> None:
        """Fail open: a fault of ours sends the citizen to the dialplan's fallback queue."""
        self.emit(CallEventType.HANDED_BACK, reason=reason[:300])
        if self.operator_channel and self.state is CallState.RINGING_OPERATOR:
            await self._hangup_quietly(self.operator_channel)
        cause = "handed back to dialplan"
        # A fault is often Asterisk answering slowly (overload): try again before giving up.
        for attempt in range(HAND_BACK_TRIES):
            try:
                await self.deps.ari.continue_in_dialplan(self.call_id, FALLBACK_CONTEXT)
                log.warning("call_handed_back", reason=reason[:300], attempt=attempt + 1)
                break
            except NotFound:
                cause = "caller gone before the hand-back"
                break
            except AriError as exc:
                log.error("hand_back_failed", error=str(exc), attempt=attempt + 1)
                await asyncio.sleep(0.25 * 2**attempt)
        else:
            cause = "hand-back refused by Asterisk"
            log.critical("call_not_handed_back", tries=HAND_BACK_TRIES)
        self.deps.queue.remove(self.call_id)
        if self.operator is not None:
            if self.state is CallState.RINGING_OPERATOR:
                self.deps.desk.cancel_offer(self.operator, self.call_id)
            else:
                self.deps.desk.released(self.operator, self.call_id)
        self.state = CallState.ENDED
        self.emit(CallEventType.ENDED, disposition=Disposition.FALLBACK.value, hangup_by="system",
                  cause=cause)

    async def _hangup_quietly(self, channel_id: str) -> None:
        try:
            await self.deps.ari.hangup(channel_id)
        except AriError:
            pass

    async def _tag(self, **variables: str) -> None:
        """Channel variables are the call's tags in Asterisk, read back by the resync: only what
        Asterisk cannot tell by itself (arrival time, priority lane). The call id is the channel
        id, and who is on the call is in its bridge. Set side by side: one round trip."""
        names = list(variables)
        results = await asyncio.gather(
            *(self.deps.ari.set_var(self.call_id, n, variables[n]) for n in names),
            return_exceptions=True,
        )
        for name, result in zip(names, results, strict=True):
            if isinstance(result, NotFound):
                raise result
            if isinstance(result, AriError):
                log.warning("tag_failed", variable=name, error=str(result))
            elif isinstance(result, BaseException):
                raise result
