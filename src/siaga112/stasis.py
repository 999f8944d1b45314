"""ARI events in: each event goes to the call it belongs to, without blocking the reader.

A citizen's StasisStart opens a session (call/session.py); every other event is routed by the id of
its channel (legs.py) into that session's inbox, where it is handled in order. Desk-phone codes
and endpoint reachability go to the operators' desk. On every (re)connect, `resync` rebuilds the
view of live calls from Asterisk: waiting callers keep waiting, connected calls are taken back.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

import structlog

from siaga112 import ids, legs
from siaga112.ari.client import AriError, Conflict, NotFound
from siaga112.ari.cluster import ClusterAri
from siaga112.ari.models import (
    AriEvent,
    Channel,
    DeviceStateChanged,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
    gone_while_away,
)
from siaga112.ari.protocol import Ari
from siaga112.ari.retry import patiently
from siaga112.call import CallDeps, CallSession, Command, Resume
from siaga112.call.cpu_wait import Routed
from siaga112.call.errors import CallNotLive, CallNotResponding
from siaga112.call.items import (
    CommandKind,
    CommandResult,
    NodeLost,
    OperatorAway,
    OverflowNow,
    StopNow,
)
from siaga112.call.waiting import talk_detect_global
from siaga112.model import CHOSEN_STATES, CallState, OperatorState

log = structlog.get_logger(__name__)

RESYNC_BUFFER_MAX = 10_000  # events held while a resync runs
CLOSED_GRACE = 60.0  # s after a session's end before its channel may count as stranded
CLOSED_KEPT = 20_000  # ends remembered for that
TALK_DETECT_GLOBAL = "SIAGA112_TALK_DETECT"  # read by dialplan/extensions.conf [emergency]
# Events the call path never reads, which Asterisk would otherwise send for every channel of
# ours (measured at 40 calls/s: ChannelVarset alone 9 per call, from bridges and dialplan
# functions). Asterisk does not send them at all: no JSON to read, parse and throw away.
UNUSED_EVENTS = (
    "ChannelVarset", "Dial", "ChannelStateChange", "ChannelConnectedLine", "ChannelCallerId",
    "ChannelDialplan", "ChannelEnteredBridge", "ChannelLeftBridge", "BridgeCreated",
    "BridgeDestroyed", "BridgeMerged", "BridgeVideoSourceChanged", "PlaybackStarted",
    "PlaybackContinuing", "ChannelTalkingFinished", "ChannelToneDetected",
    "EndpointStateChange",
)


class Stasis:
    def __init__(self, deps: CallDeps, cluster: ClusterAri | None = None) -> None:
        self._deps = deps
        # A cluster (docs/cluster.md): each node's events socket resyncs that node's calls
        # (resync(node)); a node down longer than ari.node_lost_after loses its calls.
        self._cluster = cluster
        self._synced: set[str] = set()
        self._lost_timers: dict[str, asyncio.TimerHandle] = {}
        self._suspects: set[str] = set()  # citizens in our application with no session
        self._closed_at: OrderedDict[str, float] = OrderedDict()  # call id -> its session's end
        self.sessions: dict[str, CallSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        self.resynced = asyncio.Event()  # set after each (re)connect's resync
        self._resyncing = False
        self._buffer: list[AriEvent] = []  # events of calls not yet taken back

    # -- the reader's callback: never blocks -------------------------------------------------

    def on_event(self, ev: AriEvent) -> None:
        try:
            self._route(ev)
        except Exception:
            log.exception("event_routing_failed", type=ev.type)

    def _route(self, ev: AriEvent) -> None:
        if isinstance(ev, StasisStart):
            role = ev.args[0] if ev.args else "citizen"
            if role == "citizen":
                self._citizen(ev)
                return
            if role == "opcode":
                self._spawn(self._opcode(ev))
                return
        if isinstance(ev, DeviceStateChanged):
            tech, _, name = ev.device_state.name.partition("/")
            if tech == "PJSIP":
                self._deps.desk.reachability(name, ev.device_state.state)
            return
        if isinstance(ev, PlaybackFinished):
            kind, _, target = ev.playback.target_uri.partition(":")
            session = self.sessions.get(legs.parse(target).call_id) if kind == "channel" else None
            if session is not None:
                session.post(ev)
            return
        channel: Channel | None = getattr(ev, "channel", None)
        if channel is None:
            return
        session = self.sessions.get(legs.parse(channel.id).call_id)
        if session is not None:
            session.post(ev)
        elif self._resyncing:
            if len(self._buffer) < RESYNC_BUFFER_MAX:
                self._buffer.append(ev)
            else:
                log.error("resync_buffer_full", dropped=ev.type)
        elif isinstance(ev, StasisStart):
            # A leg of a call we no longer have (it ended while the phone rang): let it go.
            log.info("orphan_leg", channel=channel.id)
            self._spawn(self._hangup(channel.id))

    def _citizen(self, ev: StasisStart) -> None:
        if ev.channel.id in self.sessions:
            return
        if not self.accepting:
            self._spawn(self._deps.ari.continue_in_dialplan(ev.channel.id, legs.FALLBACK_CONTEXT))
            return
        self._open(ev.channel, resume=None, routed=Routed.now(self._deps.cpu, ev.timestamp))

    def _open(self, channel: Channel, resume: Resume | None,
              routed: Routed | None) -> CallSession:
        session = CallSession(channel, self._deps, self._closed, resume=resume, routed=routed)
        self.sessions[session.call_id] = session
        session.task = asyncio.get_running_loop().create_task(
            session.run(), name=f"call-{session.call_id}"
        )
        return session

    def _closed(self, call_id: str) -> None:
        self.sessions.pop(call_id, None)
        self._closed_at[call_id] = time.monotonic()
        while len(self._closed_at) > CLOSED_KEPT:
            self._closed_at.popitem(last=False)

    async def _opcode(self, ev: StasisStart) -> None:
        """A desk-phone code: the desk stores the state (PostgreSQL, operator_store.py)."""
        name = _endpoint_of(ev.channel.name)
        state = ev.args[1] if len(ev.args) > 1 else ""
        if state in CHOSEN_STATES and name in self._deps.desk:
            self._deps.desk.choose(name, OperatorState(state), reason="desk phone", persist=True)
        else:
            log.warning("operator_code_rejected", endpoint=name, state=state)
        try:
            await self._deps.ari.continue_in_dialplan(ev.channel.id)
        except AriError as exc:
            log.info("opcode_continue_failed", error=str(exc))

    # -- commands from the API -------------------------------------------------------------

    async def command(self, call_id: str, kind: CommandKind, arg: str, by: str) -> CommandResult:
        """Carry out a command on a live call, in its session's order. CallNotLive, or
        CallNotResponding after 10 s; a refused command raises its CommandError."""
        session = self.sessions.get(call_id)
        if session is None:
            raise CallNotLive(call_id)
        done: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        session.post(Command(kind, arg, by, done))
        try:
            return await asyncio.wait_for(done, 10)
        except TimeoutError:
            raise CallNotResponding(call_id, kind.value) from None

    # -- resync on (re)connect ---------------------------------------------------------------

    async def resync(self, node: str | None = None) -> None:
        """Rebuild live calls from Asterisk (in a cluster: from one node, whose events socket
        just connected). Until every live call is taken back, the queue offers nobody (an
        operator on a 112 call must not look free) and events of calls not yet taken back
        wait in a buffer; they are delivered, in order, when it is done."""
        self.resynced.clear()
        self._resyncing = True
        queue = self._deps.queue
        queue.hold()
        try:
            if node is None or self._cluster is None:
                await self._resync(self._deps.ari, None)
            else:
                await self._resync(self._cluster.client(node), node)
                self._synced.add(node)
        finally:
            self._resyncing = False
            buffered, self._buffer = self._buffer, []
            for ev in buffered:
                self.on_event(ev)
            queue.release()
        if self._cluster is None or all(
                n in self._synced or n in self._cluster.lost for n in self._cluster.names):
            self.resynced.set()  # the records of calls ended meanwhile can be closed now

    def _node(self, call_id: str) -> str | None:
        return None if self._cluster is None else legs.node_of(call_id, self._cluster.names)

    async def _resync(self, ari: Ari, node: str | None) -> None:
        app = await ari.application(self._deps.settings.ari.app)
        ours = set(app.channel_ids)
        channels = {c.id: c for c in await ari.channels()}
        bridge_of: dict[str, str] = {}
        members: dict[str, list[str]] = {}
        for b in await ari.bridges():
            members[b.id] = b.channels
            for ch in b.channels:
                bridge_of[ch] = b.id
        self._deps.holding.invalidate()
        await self._deps.holding.ensure()
        await self._set_talk_detect(ari)
        await self._filter_events(ari)
        desk = self._deps.desk
        others = [s for c, s in self.sessions.items() if node is not None and self._node(c) != node]
        if not others:
            # (A node's resync keeps the desk as it is while other nodes' calls are live:
            # their operators stay busy or in wrap-up.)
            desk.reset_runtime()
        await desk.load()
        await self._watch_desk_phones(ari)

        # Calls we still hold in memory (a reconnect without a restart).
        for call_id, session in list(self.sessions.items()):
            if node is not None and self._node(call_id) != node:
                continue  # another node's call: that node's socket speaks for it
            if call_id not in ours:
                session.post(StasisEnd(type="StasisEnd", channel=Channel(id=call_id)))
                continue
            # Agency legs that ended while we were away (a duty line that rang out, an
            # officer who hung up): their end is told first, so that the session sees whom
            # the citizen still has before it hears about the operator. (Untold, a duty line
            # that rang out stayed "dialling" for good: its fallback never rung, and when the
            # operator left, the citizen was left with it, alone in the bridge.)
            ringing = session.agencies.ringing()
            for leg_id in session.agencies.channels():
                if leg_id not in channels:
                    session.post(gone_while_away(leg_id))
                elif leg_id in ringing:
                    _answered_while_away(session, channels[leg_id])
            if session.operator and session.state is CallState.CONNECTED:
                # On the call in the desk either way: an operator who hung up while we were
                # away is then released by the session, into their wrap-up.
                desk.connected(session.operator, call_id)
                if session.operator_channel not in channels:
                    session.post(OperatorAway())
            elif session.operator and session.state is CallState.RINGING_OPERATOR:
                if session.operator_channel in channels:
                    desk.ringing(session.operator, call_id)
                    _answered_while_away(session, channels[session.operator_channel])
                else:
                    session.post(gone_while_away(session.operator_channel or ""))

        opened: list[CallSession] = []
        for channel_id in sorted(ours):
            leg = legs.parse(channel_id)
            channel = channels.get(channel_id)
            if channel is None or channel_id in self.sessions:
                continue
            if leg.kind is not legs.LegKind.CITIZEN:
                owner = self.sessions.get(leg.call_id)
                citizen_there = leg.call_id in ours and leg.call_id in channels
                in_call = legs.call_of_bridge(bridge_of.get(channel_id, "")) == leg.call_id
                if (owner is None and not (in_call and citizen_there)):
                    # A desk phone or duty line with no citizen (or ringing for a call we no
                    # longer handle): hang it up, the operator is free.
                    log.info("resync_orphan_leg", channel=channel_id)
                    await self._hangup(channel_id)
                continue
            opened.append(self._take_in(channel, bridge_of, members, channels))
        if opened:
            await asyncio.wait([asyncio.ensure_future(s.taken_back.wait()) for s in opened],
                               timeout=10)
        log.info("resynced", channels=len(ours), taken_back=len(opened), live=len(self.sessions))

    async def _set_talk_detect(self, ari: Ari) -> None:
        """The dialplan sets TALK_DETECT on each 112 call before Stasis() from this global
        (one request per connect instead of one per call). If it cannot be set, the
        dialplan's defaults (those of SilenceSettings) apply."""
        value = talk_detect_global(self._deps.settings.silence)
        try:
            await ari.set_global(TALK_DETECT_GLOBAL, value)
        except AriError as exc:
            log.warning("talk_detect_global_not_set", value=value, error=str(exc))

    async def _filter_events(self, ari: Ari) -> None:
        """Once per connect. If Asterisk refuses, the events come and are ignored as before."""
        try:
            await ari.filter_events(self._deps.settings.ari.app, UNUSED_EVENTS)
        except AriError as exc:
            log.warning("event_filter_not_set", error=str(exc))

    async def _watch_desk_phones(self, ari: Ari) -> None:
        """Follow each desk phone's reachability through its device state. (Subscribing to
        the endpoints instead would also copy every channel event of those phones to us, so
        an operator's DTMF would arrive twice. Asterisk keeps an app's subscriptions until it
        restarts, and does not drop a whole-technology endpoint subscription on request.)"""
        app = self._deps.settings.ari.app
        for name in self._deps.settings.queue.operators:
            try:
                await ari.subscribe(app, f"deviceState:PJSIP/{name}")
            except AriError as exc:
                log.warning("subscribe_failed", source=f"deviceState:PJSIP/{name}",
                            error=str(exc))

    def _resume_of(
        self,
        channel: Channel,
        bridge_id: str | None,
        members: dict[str, list[str]],
        channels: dict[str, Channel],
    ) -> Resume | None:
        tags = ids.channel_tags(channel.channelvars)  # checked: a bad tag is left out
        if tags.refused:
            log.warning("channel_tags_refused", channel=channel.id, variables=tags.refused)
        # The channel's creation time is its arrival; a SIAGA112_ARRIVED tag (written by
        # daemons before 2026-11-30) still wins where a channel has one.
        since, priority, flags = tags.arrived or channel.creationtime, tags.priority, tags.flags
        if bridge_id is not None and legs.is_holding(bridge_id):
            return Resume(CallState.QUEUED, since=since, priority=priority, flags=flags)
        if bridge_id is not None and legs.call_of_bridge(bridge_id) == channel.id:
            others = [legs.parse(c) for c in members.get(bridge_id, []) if c != channel.id]
            ops = [leg for leg in others if leg.kind is legs.LegKind.OPERATOR]
            agencies = {
                c: ids.dispatch_tag((channels[c].channelvars or {}).get("SIAGA112_DISPATCH"))
                for c in members.get(bridge_id, [])
                if c in channels and legs.parse(c).kind is legs.LegKind.AGENCY
            }
            # Duty lines still ringing (dialled before we went away, not yet answered, so not
            # in our application): the call waits for them as it would have.
            ringing = {
                c.id: ids.dispatch_tag((c.channelvars or {}).get("SIAGA112_DISPATCH"))
                for c in channels.values()
                if c.id not in agencies and _agency_leg_of(c.id, channel.id)
            }
            op = ops[0] if ops else None
            if op is None and not agencies and not ringing:
                # The operator hung up while we were away: the citizen is alone in the bridge.
                return Resume(CallState.QUEUED, since=since, priority=priority, flags=flags,
                              requeue_reason="operator_gone", bridge=bridge_id)
            return Resume(
                CallState.CONNECTED, since=since, priority=priority, flags=flags,
                bridge=bridge_id,
                operator=op.party if op else None,
                operator_channel=(
                    legs.operator_leg(op.call_id, op.party, op.attempt) if op else None
                ),
                agency_channels=agencies,
                agency_dialling=ringing,
            )
        # In no bridge (the dialplan answers before Stasis()): we died before the caller was
        # queued, as it arrived or during screening or the blocked announcement. It is taken
        # in afresh: screened again, and a blocked caller hears the announcement again.
        return None

    # -- nobody left alone ------------------------------------------------------------------

    async def sweep(self) -> None:
        """Every ari.sweep_interval: a citizen in Stasis in our application whom no session
        handles, at two looks in a row (a StasisStart lost, or a hang-up a saturated PBX never
        carried out: 4 callers of a 1000-caller burst were left so, alone and in silence), is
        taken in as after a restart: queued again (or back with their operator), never hung
        up. A call whose session ended less than CLOSED_GRACE ago is left to what its end
        asked of Asterisk (a hang-up asked again, a hand-back a saturated PBX carries out
        late: measured at more than 15 s in a burst)."""
        if self._resyncing or not self.accepting:
            return
        ari, app = self._deps.ari, self._deps.settings.ari.app
        try:
            channels = {c.id: c for c in await ari.channels()}
        except AriError as exc:  # the PBX busy or away: the next look, or the reconnect's resync
            log.info("sweep_skipped", error=str(exc))
            return
        now = time.monotonic()
        orphans = {cid for cid, c in channels.items()
                   if cid not in self.sessions and _in_our_stasis(c, app)
                   and now - self._closed_at.get(cid, -CLOSED_GRACE) >= CLOSED_GRACE}
        stranded, self._suspects = orphans & self._suspects, orphans
        if not stranded:
            return
        log.error("stranded_calls_taken_in", calls=len(stranded), first=sorted(stranded)[:5])
        try:
            bridges = await ari.bridges()
        except AriError as exc:
            log.info("sweep_skipped", error=str(exc))
            return
        bridge_of = {ch: b.id for b in bridges for ch in b.channels}
        members = {b.id: b.channels for b in bridges}
        for channel_id in sorted(stranded):
            if channel_id in self.sessions:
                continue
            self._take_in(channels[channel_id], bridge_of, members, channels)

    def _take_in(self, channel: Channel, bridge_of: dict[str, str],
                 members: dict[str, list[str]], channels: dict[str, Channel]) -> CallSession:
        """A citizen in our application whom no session handles (resync, sweep): back with
        their operator when the bridges say they were connected, else queued again where
        they were, or arriving afresh when in no bridge at all."""
        resume = self._resume_of(channel, bridge_of.get(channel.id), members, channels)
        if resume is None:
            # In our application but in no bridge: the daemon died (or the StasisStart was
            # lost) as the call arrived. It arrives now, afresh; left alone it would wait in
            # Stasis with nobody handling it.
            log.info("resync_arrival", channel=channel.id, state=channel.state)
        elif resume.state is CallState.CONNECTED and resume.operator:
            self._deps.desk.connected(resume.operator, channel.id)  # busy before any offer
        return self._open(channel, resume=resume, routed=None)

    # -- a cluster's nodes -----------------------------------------------------------------------

    def node_up(self, node: str) -> None:
        """Its events socket connected (the resync follows)."""
        if self._cluster is not None:
            self._cluster.mark_up(node)
        timer = self._lost_timers.pop(node, None)
        if timer is not None:
            timer.cancel()

    def node_down(self, node: str) -> None:
        """Its events socket went down: if it stays down, the node is taken as dead."""
        self._synced.discard(node)
        if self._cluster is None:
            return
        self._cluster.mark_down(node)
        after = self._deps.settings.ari.node_lost_after
        if node not in self._lost_timers:
            self._lost_timers[node] = asyncio.get_running_loop().call_later(
                after, self._node_lost, node)

    def _node_lost(self, node: str) -> None:
        """No Asterisk keeps a call when its node dies: each of its calls ends `dropped` (the
        callback list has them); their operators are free again."""
        self._lost_timers.pop(node, None)
        if self._cluster is None:
            return
        self._cluster.lost.add(node)
        lost = [s for c, s in self.sessions.items() if self._node(c) == node]
        log.error("node_lost", node=node, calls=len(lost),
                  after=self._deps.settings.ari.node_lost_after)
        for session in lost:
            session.post(NodeLost(node))

    # -- stopping and overflow ------------------------------------------------------------------

    async def hand_back_waiting(self, grace: float = 10.0) -> int:
        """On a graceful stop, every call not connected (arriving, blocked in the announcement,
        queued, ringing an operator) goes to the dialplan's fallback queue rather than wait for
        us. Connected calls stay as they are and are taken back by the next start."""
        self.accepting = False
        leaving = [s for s in self.sessions.values()
                   if s.state not in (CallState.CONNECTED, CallState.ENDED)]
        for session in leaving:
            session.post(StopNow())
        tasks = [s.task for s in leaving if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        return len(leaving)

    async def hand_back_strays(self, grace: float = 2.0) -> int:
        """The last look of a graceful stop, once the events socket is closed (from then on
        Stasis() fails open in the dialplan): a citizen whose StasisStart came as we stopped,
        or never left the socket, is in our application with no session handling them. They
        go to the fallback queue like the others, never left in silence for a next start that
        may not come. Connected calls stay, as hand_back_waiting leaves them."""
        pending = [t for t in self._tasks if not t.done()]  # hand-offs begun as we stopped
        if pending:
            await asyncio.wait(pending, timeout=grace)
        ari, app = self._deps.ari, self._deps.settings.ari.app
        try:
            channels = await ari.channels()
        except AriError as exc:  # the PBX away: the next start's resync takes them in
            log.error("stop_sweep_failed", error=str(exc))
            return 0
        strays = sorted(c.id for c in channels if _in_our_stasis(c, app) and not (
            c.id in self.sessions and self.sessions[c.id].state is CallState.CONNECTED))
        # Together, each asked again while a saturated PBX times out (a timed-out continue
        # carried out after all answers NotFound or Conflict next time): no caller is left in
        # silence for a slow PBX, and the stop waits at most one request's patience.
        await asyncio.gather(*(self._stray_to_fallback(ari, c) for c in strays))
        return len(strays)

    async def _stray_to_fallback(self, ari: Ari, channel_id: str) -> None:
        try:
            await patiently("stop hand-back", lambda: ari.continue_in_dialplan(
                channel_id, legs.FALLBACK_CONTEXT))
        except (NotFound, Conflict):
            return  # gone, or out of Stasis: hung up, or its own hand-back came first
        except AriError as exc:
            log.error("call_not_handed_back", call_id=channel_id, error=str(exc))
            return
        log.warning("call_left_to_dialplan", context=legs.FALLBACK_CONTEXT,
                    cause="daemon stopping", call_id=channel_id, outcome="stop sweep")

    def overflow(self, call_id: str, reason: str) -> None:
        session = self.sessions.get(call_id)
        if session is not None:
            session.post(OverflowNow(reason))

    def flush_after_end(self) -> int:
        """What ended calls still have to note (their recordings): now, before a stop."""
        return self._deps.after_end.flush()

    async def close(self, grace: float = 2.0) -> None:
        for timer in self._lost_timers.values():  # (sockets closed by our stop, not deaths)
            timer.cancel()
        self._lost_timers.clear()
        tasks = [s.task for s in self.sessions.values() if s.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for t in list(self._tasks):
            t.cancel()

    # -- small helpers ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", error=repr(task.exception()))

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self._deps.ari.hangup(channel_id)
        except AriError:
            pass


def _in_our_stasis(channel: Channel, app: str) -> bool:
    """A citizen's channel in Stasis() in our application (not a desk-phone code, not a
    callback's or supervisor's leg, not one back in the dialplan's queue)."""
    dp = channel.dialplan
    if dp is None or dp.app_name != "Stasis":
        return False
    if legs.parse(channel.id).kind is not legs.LegKind.CITIZEN:
        return False
    args = dp.app_data.split(",")
    return args[0] == app and (len(args) < 2 or args[1] == "citizen")


def _agency_leg_of(channel_id: str, call_id: str) -> bool:
    leg = legs.parse(channel_id)
    return leg.kind is legs.LegKind.AGENCY and leg.call_id == call_id


def _endpoint_of(channel_name: str) -> str:
    """'PJSIP/op1-0000001a' -> 'op1'."""
    tail = channel_name.split("/", 1)[-1]
    return tail.rsplit("-", 1)[0]


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _answered_while_away(session: CallSession, channel: Channel) -> None:
    """A desk phone or duty line rung for the call that answered while we were away: its
    StasisStart was lost with the socket. Told now, the session bridges it (untold, the
    operator or officer sat in silence and the caller waited on, for good). A StasisStart
    that comes on the new socket as well is taken once (the legs ignore a second)."""
    if channel.state == "Up":
        log.info("answered_while_away", channel=channel.id)
        session.post(StasisStart(type="StasisStart", channel=channel,
                                 args=[legs.parse(channel.id).kind.value, session.call_id]))
