"""Supervisors on operators' calls: listen, whisper to the operator only, or barge in.

A supervisor's desk phone (settings.supervision.phones, the dialplan's [supervisors]) dials
`*51NN` (listen to operator opNN's call), `*52NN` (whisper: the operator hears the supervisor,
the citizen does not) or `*53NN` (barge: join the call); the API does the same by ringing the
supervisor's phone first (api/supervision.py). Through ARI:

- listen: a snoop channel on the operator's leg with spy=both (what the operator says and
  hears) and whisper=none, in a private mixing bridge with the supervisor's phone;
- whisper: the same snoop with whisper=out: what the supervisor says goes to the operator's
  phone only;
- barge: the supervisor's phone joins the call's own bridge.

Supervisors' phones and snoop channels live in an ARI application of their own
(settings.supervision.app, its own events websocket), so the call path (stasis.py) never sees
them. Every use is audited on the call itself: SUPERVISION_STARTED and SUPERVISION_ENDED call
events, through the journal to the records and out on MQTT like every step of the call. A
refused request (a bad code, an operator not on a call) is logged and the phone hears the
"unknown code" prompt; it touches no call.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import structlog

from siaga112 import legs
from siaga112.ari.client import AriError, Conflict
from siaga112.ari.events import EventStream, EventStreams
from siaga112.ari.models import (
    Application,
    AriEvent,
    Bridge,
    Channel,
    ChannelDestroyed,
    ChannelLeftBridge,
    StasisEnd,
    StasisStart,
)
from siaga112.model import CallEventType, CallState
from siaga112.settings import Settings

log = structlog.get_logger(__name__)

BRIDGE_PREFIX = "siaga112-sup-"
SNOOP_ARG = "snoop"
RING_SECONDS = 30  # an API request rings the supervisor's phone this long
# A snoop channel is made at once but enters our application a moment later; until then
# Asterisk refuses to bridge it (422 "Channel not in Stasis application"). Asked again for
# this long.
SNOOP_JOIN_SECONDS = 2.0
SNOOP_JOIN_EVERY = 0.05
_CODE = re.compile(r"\*5([0-9])([0-9]{2})")


class Mode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


CODE_MODES = {"1": Mode.LISTEN, "2": Mode.WHISPER, "3": Mode.BARGE}
# (spy, whisper) of the snoop channel on the operator's leg; barge has none.
SNOOP = {Mode.LISTEN: ("both", "none"), Mode.WHISPER: ("both", "out")}


class Refused(Exception):
    """A supervision request that cannot be carried out; str() says why, for people."""


class NotOnCall(Refused):
    """The operator is not talking to a citizen now."""


@dataclass(frozen=True)
class Request:
    mode: Mode
    operator: str


def operator_name(nn: str, operators: list[str]) -> str:
    """Desk-phone number NN ('01') -> the operator's name ('op1'), if there is such a desk."""
    if not (len(nn) == 2 and nn.isdigit()):
        raise Refused(f"operator number must be two digits, got {nn!r}")
    name = f"op{int(nn)}"
    if name not in operators:
        raise Refused(f"no operator {nn} (desks: {', '.join(operators)})")
    return name


def parse_code(code: str, operators: list[str]) -> Request:
    """'*51NN' listen, '*52NN' whisper, '*53NN' barge on opNN's call; Refused otherwise."""
    m = _CODE.fullmatch(code)
    if m is None:
        raise Refused(f"{code[:16]!r} is not a supervisor code (*51NN listen, *52NN whisper, "
                      "*53NN barge)")
    mode = CODE_MODES.get(m.group(1))
    if mode is None:
        raise Refused(f"*5{m.group(1)} is not a supervisor code (*51 listen, *52 whisper, "
                      "*53 barge)")
    return Request(mode, operator_name(m.group(2), operators))


def endpoint_of(channel_name: str) -> str:
    """'PJSIP/sup1-0000001a' -> 'sup1'."""
    return channel_name.split("/", 1)[-1].rsplit("-", 1)[0]


class SupervisionAri(Protocol):
    """The ARI requests supervision makes (ari/client.py's AriClient)."""

    async def snoop(self, channel_id: str, snoop_id: str, app: str, app_args: str = "",
                    spy: str = "none", whisper: str = "none") -> Channel: ...
    async def originate(self, endpoint: str, channel_id: str, app: str, app_args: str,
                        caller_id: str | None = None, ring_seconds: int = 30,
                        variables: dict[str, str] | None = None) -> Channel: ...
    async def hangup(self, channel_id: str, reason: str = "normal") -> None: ...
    async def continue_in_dialplan(self, channel_id: str, context: str | None = None,
                                   extension: str = "s", priority: int = 1) -> None: ...
    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> Bridge: ...
    async def add_to_bridge(self, bridge_id: str, channel_id: str | Sequence[str],
                            role: str | None = None) -> None: ...
    async def destroy_bridge(self, bridge_id: str) -> None: ...
    async def bridges(self) -> list[Bridge]: ...
    async def application(self, app: str) -> Application: ...


class LiveCall(Protocol):
    """What supervision needs of a call's session (call/session.py)."""

    call_id: str
    state: CallState
    operator: str | None
    operator_channel: str | None
    bridge_id: str  # the call's bridge

    def emit(self, type_: CallEventType, **data: Any) -> None: ...


@dataclass
class Active:
    id: str  # the supervisor's channel id
    phone: str
    mode: Mode
    operator: str
    call: LiveCall
    by: str
    snoop: str | None = None
    bridge: str | None = None
    started: float = field(default_factory=time.monotonic)
    since: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        return {"supervision_id": self.id, "phone": self.phone, "mode": self.mode.value,
                "operator": self.operator, "call_id": self.call.call_id, "by": self.by,
                "since": self.since}


@dataclass(frozen=True)
class Pending:
    """An API request: the supervisor's phone is ringing."""

    request: Request
    phone: str
    by: str


class Supervision:
    def __init__(self, ari: SupervisionAri, settings: Settings,
                 sessions: Callable[[], Mapping[str, LiveCall]]) -> None:
        self._ari = ari
        self._settings = settings
        self._sessions = sessions
        self.app = settings.supervision.app
        self.active: dict[str, Active] = {}
        self._pending: dict[str, Pending] = {}
        self._inbox: asyncio.Queue[AriEvent] = asyncio.Queue()
        # One events socket per node in a cluster (docs/cluster.md), one with a single PBX.
        self.events = EventStreams([
            EventStream(settings.ari.model_copy(update={"app": self.app, "url": node.url}),
                        on_event=self._inbox.put_nowait, on_connect=self.resync)
            for node in settings.ari.nodes
        ] or [EventStream(settings.ari.model_copy(update={"app": self.app}),
                          on_event=self._inbox.put_nowait, on_connect=self.resync)])

    # -- running: the events websocket and one worker, events handled in order ------------

    async def run(self) -> None:
        worker = asyncio.create_task(self._work(), name="supervision-events")
        try:
            await self.events.run()
        finally:
            worker.cancel()

    def stop(self) -> None:
        self.events.stop()

    async def _work(self) -> None:
        while True:
            ev = await self._inbox.get()
            try:
                await self._on_event(ev)
            except Exception:
                log.exception("supervision_event_failed", type=ev.type)

    async def resync(self) -> None:
        """On (re)connect: a supervision does not outlive our connection. Hang up what is left
        in our application (phones and snoops), end what we still hold."""
        for sup in list(self.active.values()):
            await self._end(sup, "resync")
        try:
            app = await self._ari.application(self.app)
            for channel_id in app.channel_ids:
                await self._hangup(channel_id)
            for bridge in await self._ari.bridges():
                if bridge.id.startswith(BRIDGE_PREFIX):
                    await self._quietly(self._ari.destroy_bridge(bridge.id))
        except AriError as exc:
            log.warning("supervision_resync_failed", error=str(exc))

    # -- requests --------------------------------------------------------------------------

    def call_of(self, operator: str) -> LiveCall:
        for call in self._sessions().values():
            if (call.operator == operator and call.state is CallState.CONNECTED
                    and call.operator_channel):
                return call
        raise NotOnCall(f"{operator} is not on a call")

    async def ring(self, phone: str, request: Request, by: str) -> str:
        """The API: ring the supervisor's phone; when it answers, the supervision starts. The
        supervision's id (its channel's) at once; Refused if it cannot be."""
        if phone not in self._settings.supervision.phones:
            raise Refused(f"{phone!r} is not a supervisor's phone "
                          f"({', '.join(self._settings.supervision.phones)})")
        call = self.call_of(request.operator)
        # In a cluster the supervisor's phone is rung from the call's node (its name starts
        # the call id; with a single PBX there is none): snoop and bridge must be there too.
        node, dash, _ = call.call_id.partition("-")
        channel_id = f"{node + '-' if dash else ''}{phone}-{uuid.uuid4().hex[:12]}"
        self._pending[channel_id] = Pending(request, phone, by)
        try:
            await self._ari.originate(
                endpoint=f"PJSIP/{phone}", channel_id=channel_id, app=self.app,
                app_args=f"api,{request.mode.value},{request.operator}",
                caller_id=f'"{request.mode.value} {request.operator}" <{request.operator}>',
                ring_seconds=RING_SECONDS)
        except AriError as exc:
            self._pending.pop(channel_id, None)
            raise Refused(f"could not ring {phone}: {exc.message}") from None
        log.info("supervision_ringing", phone=phone, mode=request.mode.value,
                 operator=request.operator, by=by, channel=channel_id)
        return channel_id

    async def end(self, supervision_id: str, by: str) -> bool:
        sup = self.active.get(supervision_id)
        if sup is None:
            return False
        await self._end(sup, f"ended by {by}")
        return True

    # -- events ----------------------------------------------------------------------------

    async def _on_event(self, ev: AriEvent) -> None:
        if isinstance(ev, StasisStart):
            if ev.args and ev.args[0] == SNOOP_ARG:
                return
            await self._phone(ev)
            return
        channel = getattr(ev, "channel", None)
        if channel is None:
            return
        if isinstance(ev, (StasisEnd, ChannelDestroyed)):
            self._pending.pop(channel.id, None)
            sup = self.active.get(channel.id)
            if sup is not None:
                await self._end(sup, "supervisor_hung_up")
                return
            for sup in list(self.active.values()):
                if sup.snoop == channel.id:
                    await self._end(sup, "operator_left")
        elif isinstance(ev, ChannelLeftBridge):
            sup = self.active.get(channel.id)
            if (sup is not None and sup.mode is Mode.BARGE
                    and ev.bridge.id == sup.call.bridge_id):
                await self._end(sup, "call_ended")

    async def _phone(self, ev: StasisStart) -> None:
        channel = ev.channel
        phone = endpoint_of(channel.name)
        pending = self._pending.pop(channel.id, None)
        try:
            if pending is not None:
                request, phone, by = pending.request, pending.phone, pending.by
            else:
                if phone not in self._settings.supervision.phones:
                    raise Refused(f"{phone!r} is not a supervisor's phone")
                code = ev.args[1] if len(ev.args) > 1 else ""
                request = parse_code(code, self._settings.queue.operators)
                by = phone
            await self._start(channel.id, phone, request, by)
        except Refused as exc:
            log.warning("supervision_refused", phone=phone, reason=str(exc))
            if pending is not None:
                await self._hangup(channel.id)
            else:  # the dialplan says so ("unknown code") and hangs up
                await self._quietly(self._ari.continue_in_dialplan(channel.id))

    async def _start(self, channel_id: str, phone: str, request: Request, by: str) -> None:
        call = self.call_of(request.operator)
        operator_channel = call.operator_channel
        assert operator_channel is not None  # call_of checked it
        nodes = [n.name for n in self._settings.ari.nodes]
        here, there = legs.node_of(channel_id, nodes), legs.node_of(call.call_id, nodes)
        if here != there:
            # A cluster: the proxy gave the supervisor's code to another node than the call's;
            # no bridge spans two nodes (the API's supervision rings from the call's node).
            raise Refused(f"{request.operator}'s call is on {there}, the phone reached {here}: "
                          "supervise it through the API")
        sup = Active(channel_id, phone, request.mode, request.operator, call, by)
        if request.mode is Mode.BARGE:
            try:
                await self._ari.add_to_bridge(call.bridge_id, channel_id)
            except AriError as exc:  # the call ended as the supervisor answered
                raise NotOnCall(f"{request.operator}'s call cannot be joined: "
                                f"{exc.message}") from None
        else:
            spy, whisper = SNOOP[request.mode]
            sup.snoop = f"{channel_id}-snoop"
            sup.bridge = BRIDGE_PREFIX + channel_id
            try:
                await self._ari.snoop(operator_channel, sup.snoop, self.app, SNOOP_ARG,
                                      spy=spy, whisper=whisper)
            except AriError as exc:
                raise NotOnCall(f"{request.operator}'s leg cannot be snooped: "
                                f"{exc.message}") from None
            try:
                await self._ari.create_bridge(sup.bridge, "mixing", f"supervision {channel_id}")
                await self._ari.add_to_bridge(sup.bridge, channel_id)
                await self._join_snoop(sup.bridge, sup.snoop)
            except AriError as exc:
                # Nothing of it may stay on the operator's call: the snoop goes, and the
                # supervisor's phone is told (Refused) rather than left in silence.
                await self._hangup(sup.snoop)
                await self._quietly(self._ari.destroy_bridge(sup.bridge))
                raise NotOnCall(f"{request.operator}'s call could not be joined: "
                                f"{exc.message}") from None
        self.active[channel_id] = sup
        log.info("supervision_started", supervision_id=channel_id, phone=phone,
                 mode=request.mode.value, operator=request.operator, call_id=call.call_id,
                 by=by)
        call.emit(CallEventType.SUPERVISION_STARTED, supervision_id=channel_id,
                  supervisor=phone, mode=request.mode.value, operator=request.operator, by=by)

    async def _join_snoop(self, bridge: str, snoop: str) -> None:
        deadline = time.monotonic() + SNOOP_JOIN_SECONDS
        while True:
            try:
                await self._ari.add_to_bridge(bridge, snoop)
                return
            except Conflict:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(SNOOP_JOIN_EVERY)

    async def _end(self, sup: Active, reason: str) -> None:
        if self.active.pop(sup.id, None) is None:
            return
        seconds = round(time.monotonic() - sup.started, 1)
        log.info("supervision_ended", supervision_id=sup.id, reason=reason, seconds=seconds)
        sup.call.emit(CallEventType.SUPERVISION_ENDED, supervision_id=sup.id,
                      supervisor=sup.phone, mode=sup.mode.value, operator=sup.operator,
                      by=sup.by, reason=reason, seconds=seconds)
        if sup.snoop is not None:
            await self._hangup(sup.snoop)
        if sup.bridge is not None:
            await self._quietly(self._ari.destroy_bridge(sup.bridge))
        await self._hangup(sup.id)

    async def _hangup(self, channel_id: str) -> None:
        await self._quietly(self._ari.hangup(channel_id))

    async def _quietly(self, request: Awaitable[Any]) -> None:
        try:
            await request
        except AriError as exc:
            log.debug("supervision_ari_ignored", error=str(exc))
