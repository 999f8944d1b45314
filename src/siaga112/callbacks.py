"""Calling a citizen back: the operator's phone first, then the citizen through the trunk their
call came in on, both in one mixing bridge. The callback list itself is in the records
(records/callbacks.py); this is the call.

Two ways in:
- the desk-phone code ``*9`` (dialplan [operators]): the operator's phone is already off hook;
  the dialplan hands it to ARI application ``<ari.app>-callback`` with the argument ``desk``,
  and the oldest open callback is called. With none open, the channel goes back to the
  dialplan with ``SIAGA112_CALLBACK=none`` (it says goodbye);
- ``POST /callbacks/{call_id}/call``: the operator's phone is rung (``<id>-desk``); once it is
  answered the citizen is dialled.

The citizen's leg is dialled into the dialplan's ``[callback-answered]``: once answered it is
recorded (MixMonitor, as every call) and enters our application. A callback call is its own
application, so the 112 call path (stasis.py) never sees its channels. It is recorded like a
call: ``arrived`` (data ``direction: outbound``, ``callback_of``), ``ringing`` / ``connected``
(the operator), ``ended`` with disposition ``callback`` and ``outcome`` (answered, no_answer,
busy, failed, operator_no_answer), then ``recording``, through the same sinks (records journal,
MQTT). Answered, it closes the callback entry (derived in the records). The operator is busy on
the desk for as long as it lasts, so no 112 call is offered to them meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import structlog

from siaga112.ari.client import AriError
from siaga112.ari.models import (
    AriEvent,
    Channel,
    ChannelDestroyed,
    StasisEnd,
    StasisStart,
)
from siaga112.model import CallEvent, CallEventType, Disposition, OperatorState
from siaga112.records.schemas import Callback
from siaga112.sinks import EventSink
from siaga112.wav import seconds_of_pcm_wav

log = structlog.get_logger(__name__)

RING_SECONDS = 30  # each phone rings this long (the operator's, then the citizen's)
ANSWERED_CONTEXT = "callback-answered"  # dialplan: MixMonitor, then Stasis(<app>-callback)
RECORDING_LOOKS = 10  # seconds we look for the callback's recording after it ended
WATCHDOG_SLACK = 15.0  # a leg that neither answers nor ends this long after its ring time
APP_SUFFIX = "-callback"
# Q.850 causes of a citizen's leg that ended before it was answered.
_OUTCOMES = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected", 16: "no_answer"}


class Outcome(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    REJECTED = "rejected"
    FAILED = "failed"
    OPERATOR_NO_ANSWER = "operator_no_answer"


class CallbackError(Exception):
    """A callback that cannot be started now; `status` is the API's answer."""

    status = 409
    error = "callback_refused"


class NoSuchCallback(CallbackError):
    status, error = 404, "callback_not_found"


class CallbackClosed(CallbackError):
    error = "callback_closed"


class CallbackBusy(CallbackError):
    error = "callback_in_progress"


class OperatorBusy(CallbackError):
    error = "operator_busy"


class CallbackAri(Protocol):
    """The ARI calls a callback makes (ari.client.AriClient)."""

    async def originate(self, endpoint: str, channel_id: str, app: str, app_args: str,
                        caller_id: str | None = None, ring_seconds: int = 30,
                        variables: dict[str, str] | None = None) -> Channel: ...
    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> Any: ...
    async def add_to_bridge(self, bridge_id: str, channel_id: str,
                            role: str | None = None) -> None: ...
    async def destroy_bridge(self, bridge_id: str) -> None: ...
    async def hangup(self, channel_id: str, reason: str = "normal") -> None: ...
    async def ring(self, channel_id: str) -> None: ...
    async def set_var(self, channel_id: str, name: str, value: str) -> None: ...
    async def continue_in_dialplan(self, channel_id: str, context: str | None = None) -> None: ...
    async def application(self, app: str) -> Any: ...
    async def subscribe(self, app: str, event_source: str) -> None: ...
    async def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                      json: dict[str, Any] | None = None) -> Any: ...


class Desk(Protocol):
    """The operators' desk (operators.OperatorDesk): who is busy."""

    def __contains__(self, name: str) -> bool: ...
    def get(self, name: str) -> Any: ...
    def ringing(self, name: str, call_id: str) -> None: ...
    def connected(self, name: str, call_id: str) -> None: ...
    def released(self, name: str, call_id: str) -> None: ...
    def cancel_offer(self, name: str, call_id: str) -> None: ...


OpenCallbacks = Callable[[], Awaitable[Sequence[Callback]]]  # oldest first
FindCallback = Callable[[str], Awaitable[Callback | None]]


def dial_number(e164: str) -> str:
    """What the trunk is dialled with: the national form (+62812... -> 0812...)."""
    return "0" + e164[3:] if e164.startswith("+62") else e164


def endpoint_of(channel_name: str) -> str:
    """'PJSIP/op1-0000001a' -> 'op1'."""
    return channel_name.split("/", 1)[-1].rsplit("-", 1)[0]


@dataclass
class CallbackCall:
    call_id: str  # the record's id
    callback: Callback
    operator: str
    by: str
    operator_channel: str | None = None
    answered_by_operator: bool = False
    citizen_up: bool = False
    ended: bool = False
    seq: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def bridge(self) -> str:
        return f"siaga112-callback-{self.call_id}"

    @property
    def desk_leg(self) -> str:
        return f"{self.call_id}-desk"

    @property
    def citizen_leg(self) -> str:
        # Not the call id itself: Asterisk refuses a channel id that another channel's id
        # starts with ("Channel with given unique ID already exists").
        return f"{self.call_id}-citizen"


class CallbackDialer:
    def __init__(
        self,
        ari: CallbackAri,
        app: str,
        sink: EventSink,
        desk: Desk,
        open_callbacks: OpenCallbacks,
        find_callback: FindCallback,
        ring_seconds: int = RING_SECONDS,
        recordings: Path | None = None,
    ) -> None:
        self._ari = ari
        self._recordings = recordings  # where MixMonitor writes, as we see it; None: not noted
        self.app = app + APP_SUFFIX
        self._sink = sink
        self._desk = desk
        self._open = open_callbacks
        self._find = find_callback
        self._ring = ring_seconds
        self.calls: dict[str, CallbackCall] = {}  # by call id
        self._by_channel: dict[str, CallbackCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def in_progress(self, callback_id: str) -> CallbackCall | None:
        for call in self.calls.values():
            if call.callback.call_id == callback_id and not call.ended:
                return call
        return None

    # -- ways in ------------------------------------------------------------------------------

    async def call(self, callback_id: str, operator: str, by: str) -> CallbackCall:
        """The API's way: ring the operator's phone, then the citizen. CallbackError when it
        cannot start now."""
        callback = await self._find(callback_id)
        if callback is None:
            raise NoSuchCallback(f"no callback for call {callback_id!r}")
        if callback.closed_at is not None:
            raise CallbackClosed(f"callback {callback_id!r} was closed "
                                 f"({callback.closed_reason}) by call {callback.closed_by_call}")
        if self.in_progress(callback_id) is not None:
            raise CallbackBusy(f"callback {callback_id!r} is being called now")
        self._check_operator(operator)
        call = self._new(callback, operator, by)
        self._desk.ringing(operator, call.call_id)
        self._emit(call, CallEventType.RINGING, operator=operator)
        self._by_channel[call.desk_leg] = call
        try:
            await self._ari.originate(
                f"PJSIP/{operator}", call.desk_leg, self.app, "operator",
                caller_id=f'"Callback" <{dial_number(callback.caller)}>',
                ring_seconds=self._ring)
        except AriError as exc:
            await self._end(call, Outcome.FAILED, "system", f"operator phone: {exc}")
            raise CallbackError(f"the phone of {operator} could not be rung: {exc}") from None
        self._watch(call, call.desk_leg)
        return call

    def _check_operator(self, operator: str) -> None:
        if operator not in self._desk:
            raise OperatorBusy(f"no operator named {operator!r}")
        op = self._desk.get(operator)
        state = getattr(op, "state", None)
        if state in (OperatorState.RINGING, OperatorState.ON_CALL):
            raise OperatorBusy(f"{operator} is {state.value}")

    async def _from_desk(self, channel: Channel) -> None:
        """*9: the oldest open callback not being called now, to this desk phone."""
        operator = endpoint_of(channel.name)
        chosen: Callback | None = None
        try:
            for callback in await self._open():
                if not callback.trunk:
                    # (a call the dialplan's fallback journal brought in has no trunk: it
                    # cannot be dialled from here; it stays on the list, for a call by hand)
                    log.info("callback_skipped_no_trunk", callback=callback.call_id)
                    continue
                if self.in_progress(callback.call_id) is None:
                    chosen = callback
                    break
        except Exception as exc:  # the records are away: nothing to call back from here
            log.warning("callback_list_unavailable", error=repr(exc)[:200])
        if chosen is None or operator not in self._desk:
            log.info("callback_none_open", operator=operator)
            await self._back_to_dialplan(channel.id, "none")
            return
        # In a cluster the callback's legs and bridge go on the node of the operator's phone
        # channel: its node name (systemname) starts its id, and so starts the callback's.
        node, dash, _ = channel.id.partition("-")
        call = self._new(chosen, operator, "desk phone", prefix=node + dash)
        call.operator_channel = channel.id
        call.answered_by_operator = True
        self._by_channel[channel.id] = call
        await self._dial_citizen(call)

    # -- the call -----------------------------------------------------------------------------

    def _new(self, callback: Callback, operator: str, by: str, prefix: str = "") -> CallbackCall:
        call = CallbackCall(call_id=prefix + "cb" + uuid.uuid4().hex[:20], callback=callback,
                            operator=operator, by=by)
        self.calls[call.call_id] = call
        self._by_channel[call.citizen_leg] = call
        self._emit(call, CallEventType.ARRIVED, caller_raw=dial_number(callback.caller),
                   caller=callback.caller, caller_problem="none",
                   line_type=callback.line_type or "unknown", trunk=callback.trunk,
                   channel_id=call.citizen_leg, direction="outbound",
                   callback_of=callback.call_id, operator=operator, by=by)
        log.info("callback_started", call_id=call.call_id, callback_of=callback.call_id,
                 operator=operator, by=by)
        return call

    async def _dial_citizen(self, call: CallbackCall) -> None:
        assert call.operator_channel is not None
        self._desk.connected(call.operator, call.call_id)
        trunk = call.callback.trunk
        if not trunk:
            await self._end(call, Outcome.FAILED, "system", "the call's trunk is not known")
            return
        try:
            await self._ari.create_bridge(call.bridge, "mixing", f"callback {call.call_id}")
            await self._ari.add_to_bridge(call.bridge, call.operator_channel)
            try:
                await self._ari.ring(call.operator_channel)  # the operator hears it ring
            except AriError:
                pass
            # Answered, the citizen's leg runs the dialplan's [callback-answered] (recorded
            # like every call, then into our application); we follow it from the start, so a
            # line that is busy or not answered is seen with its cause.
            await self._ari.request(
                "POST", "/channels",
                {"endpoint": f"PJSIP/{dial_number(call.callback.caller)}@{trunk}",
                 "channelId": call.citizen_leg, "context": ANSWERED_CONTEXT, "extension": "s",
                 "priority": "1", "callerId": '"112" <112>', "timeout": str(self._ring)},
                json={"variables": {"SIAGA112_CALLBACK": call.call_id}})
            await self._ari.subscribe(self.app, f"channel:{call.citizen_leg}")
        except AriError as exc:
            await self._end(call, Outcome.FAILED, "system", str(exc))
            return
        self._watch(call, call.citizen_leg)

    def _watch(self, call: CallbackCall, channel_id: str) -> None:
        """A leg that neither answers nor ends in its ring time (plus slack) is hung up."""
        async def watchdog() -> None:
            await asyncio.sleep(self._ring + WATCHDOG_SLACK)
            if call.ended or (channel_id == call.citizen_leg and call.citizen_up) or (
                    channel_id == call.desk_leg and call.answered_by_operator):
                return
            log.warning("callback_leg_stuck", call_id=call.call_id, channel=channel_id)
            await self._hangup(channel_id)
            await self._end(call, Outcome.FAILED if channel_id == call.citizen_leg
                            else Outcome.OPERATOR_NO_ANSWER, "system", "no answer, no end")

        self._spawn(watchdog(), call)

    # -- ARI events ---------------------------------------------------------------------------

    def on_event(self, ev: AriEvent) -> None:
        try:
            self._route(ev)
        except Exception:
            log.exception("callback_event_failed", type=ev.type)

    def _route(self, ev: AriEvent) -> None:
        if isinstance(ev, StasisStart):
            role = ev.args[0] if ev.args else ""
            if role == "desk":
                self._spawn(self._from_desk(ev.channel))
                return
            call = self._by_channel.get(ev.channel.id)
            if call is None:
                log.info("callback_orphan_leg", channel=ev.channel.id)
                self._spawn(self._hangup(ev.channel.id))
            elif role == "operator":
                self._spawn(self._operator_answered(call, ev.channel), call)
            elif role == "citizen":
                self._spawn(self._citizen_answered(call), call)
            return
        if isinstance(ev, (StasisEnd, ChannelDestroyed)):
            call = self._by_channel.get(ev.channel.id)
            if call is not None and not call.ended:
                cause = ev.cause if isinstance(ev, ChannelDestroyed) else 16
                self._spawn(self._leg_gone(call, ev.channel.id, cause), call)

    async def _operator_answered(self, call: CallbackCall, channel: Channel) -> None:
        if call.ended:
            await self._hangup(channel.id)
            return
        call.operator_channel = channel.id
        call.answered_by_operator = True
        await self._dial_citizen(call)

    async def _citizen_answered(self, call: CallbackCall) -> None:
        if call.ended:
            await self._hangup(call.citizen_leg)
            return
        call.citizen_up = True
        try:
            await self._ari.add_to_bridge(call.bridge, call.citizen_leg)
        except AriError as exc:
            await self._end(call, Outcome.FAILED, "system", str(exc))
            return
        self._emit(call, CallEventType.CONNECTED, operator=call.operator)
        log.info("callback_connected", call_id=call.call_id, operator=call.operator)

    async def _leg_gone(self, call: CallbackCall, channel_id: str, cause: int) -> None:
        if call.ended:
            return
        if channel_id == call.citizen_leg:
            if call.citizen_up:
                await self._end(call, Outcome.ANSWERED, "citizen", "citizen hung up")
            else:
                outcome = Outcome(_OUTCOMES.get(cause, "failed"))
                await self._end(call, outcome, "system", f"citizen's line: cause {cause}")
        elif not call.answered_by_operator:
            await self._end(call, Outcome.OPERATOR_NO_ANSWER, "system",
                            f"operator's phone: cause {cause}")
        else:
            outcome = Outcome.ANSWERED if call.citizen_up else Outcome.NO_ANSWER
            await self._end(call, outcome, "operator", "operator hung up")

    async def _end(self, call: CallbackCall, outcome: Outcome, by: str, cause: str) -> None:
        if call.ended:
            return
        call.ended = True
        for channel_id in (call.citizen_leg, call.operator_channel, call.desk_leg):
            if channel_id:
                await self._hangup(channel_id)
        try:
            await self._ari.destroy_bridge(call.bridge)
        except AriError:
            pass
        if call.answered_by_operator:
            self._desk.released(call.operator, call.call_id)
        else:
            self._desk.cancel_offer(call.operator, call.call_id)
        self._emit(call, CallEventType.ENDED, disposition=Disposition.CALLBACK.value,
                   hangup_by=by, cause=cause[:300], outcome=outcome.value)
        log.info("callback_ended", call_id=call.call_id, outcome=outcome.value, cause=cause)
        if call.citizen_up and self._recordings is not None:
            self._spawn(self._note_recording(call, self._recordings / f"{call.call_id}.wav"))
        for channel_id in [c for c, v in self._by_channel.items() if v is call]:
            self._by_channel.pop(channel_id, None)
        self.calls.pop(call.call_id, None)
        me = asyncio.current_task()
        for task in list(call.tasks):
            if task is not me:
                task.cancel()

    async def _note_recording(self, call: CallbackCall, path: Path) -> None:
        """The recording in the record, once MixMonitor has let go of it (its size held still
        for a second; up to RECORDING_LOOKS tries)."""
        last = -1
        for _ in range(RECORDING_LOOKS):
            await asyncio.sleep(1.0)
            try:
                size = (await asyncio.to_thread(path.stat)).st_size
            except OSError:
                size = -1
            if size >= 0 and size == last:
                self._emit(call, CallEventType.RECORDING, path=str(path),
                           seconds=round(seconds_of_pcm_wav(size), 2))
                return
            last = size
        log.warning("callback_recording_missing", call_id=call.call_id, path=str(path))

    async def _back_to_dialplan(self, channel_id: str, value: str) -> None:
        try:
            await self._ari.set_var(channel_id, "SIAGA112_CALLBACK", value)
            await self._ari.continue_in_dialplan(channel_id)
        except AriError as exc:
            log.info("callback_desk_continue_failed", error=str(exc))

    # -- (re)connect and stop -----------------------------------------------------------------

    async def resync(self) -> None:
        """On (re)connect: a leg in our application that no callback of ours knows (the daemon
        restarted during a callback) is hung up; the callback stays open for another try."""
        app = await self._ari.application(self.app)
        for channel_id in getattr(app, "channel_ids", []):
            if channel_id not in self._by_channel:
                log.info("callback_resync_orphan", channel=channel_id)
                await self._hangup(channel_id)

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await self._end(call, Outcome.FAILED, "system", "daemon stopping")
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    # -- helpers --------------------------------------------------------------------------------

    def _emit(self, call: CallbackCall, type_: CallEventType, **data: Any) -> None:
        call.seq += 1
        self._sink.call_event(CallEvent(call_id=call.call_id, seq=call.seq, type=type_,
                                        data=data))

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self._ari.hangup(channel_id)
        except AriError:
            pass

    def _spawn(self, coro: Coroutine[Any, Any, None], call: CallbackCall | None = None) -> None:
        """Run coro beside the event reader; a call's own tasks (its watchdogs) end with it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if call is not None:
            call.tasks.add(task)
            task.add_done_callback(call.tasks.discard)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("callback_task_failed", error=repr(task.exception()))
