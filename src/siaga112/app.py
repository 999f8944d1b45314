"""The composition root: builds every part of the daemon in order, passes each its
dependencies, runs them, and shuts them down in one place, in reverse order.

Order of a call's way through the parts built here: EventStream (ARI events in) -> Stasis
(routing) -> CallSession (call/: one task per call) -> Screening -> CallQueue / OperatorDesk ->
operator and agency bridges -> FanOut(RecordWriter, MqttNotifier) (records and events out).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.agencies import Directory
from siaga112.api.live import LiveFeed
from siaga112.ari.client import AriClient
from siaga112.ari.cluster import ClusterAri
from siaga112.ari.events import EventStream, EventStreams
from siaga112.ari.socket_rest import SocketRest
from siaga112.call import CallDeps
from siaga112.callbacks import CallbackDialer
from siaga112.coalesce import Coalesced
from siaga112.dispatch_clock import DispatchClock
from siaga112.fallback_import import FallbackImporter
from siaga112.holding import HoldingBridge
from siaga112.leadership import Leadership, Role
from siaga112.location.intake import AmlIntake, RecentCalls
from siaga112.location.network import NetworkLocator
from siaga112.metrics import Metrics
from siaga112.model import BlockEntry, CallEvent, CallEventType
from siaga112.notifier import MqttNotifier, NullNotifier
from siaga112.operator_store import ChoiceStore
from siaga112.operators import OperatorDesk
from siaga112.orphans import OrphanCloser
from siaga112.overflow import TICK, Overflow
from siaga112.queue import CallQueue
from siaga112.recordings import RetentionSweeper
from siaga112.records.agencies import keep_synced
from siaga112.records.callbacks import get_callback, list_callbacks
from siaga112.records.engine import connect_args, ping_when_idle
from siaga112.records.listen import BlocklistListener
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.records.schemas import CallRecord
from siaga112.records.writer import RecordWriter
from siaga112.screening import Screening
from siaga112.settings import AriSettings, Settings
from siaga112.sinks import FanOut
from siaga112.stasis import Stasis
from siaga112.supervision import Supervision
from siaga112.supervisor import Supervisor

log = structlog.get_logger(__name__)

def _per_node(settings: Settings) -> list[AriSettings]:
    """The ARI settings of each node (one: the single PBX)."""
    return [settings.ari.model_copy(update={"url": node.url}) for node in settings.ari.nodes
            ] or [settings.ari]


QUEUE_ENTRIES_PUBLISHED = 50  # entries of the queue in its MQTT and live snapshots
EXIT_LEADERSHIP_LOST = 3  # `siaga112 run` exits so when another daemon took the lead


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        # One PBX, or a cluster's nodes behind one ARI (ari/cluster.py, docs/cluster.md).
        # Each node's requests ride its events socket while it is up (ari/socket_rest.py).
        self.sockets = {node.name: self._socket_rest(settings) for node in settings.ari.nodes
                        } or {"": self._socket_rest(settings)}
        self.cluster = ClusterAri({
            node.name: AriClient(settings.ari.model_copy(update={"url": node.url}),
                                 observe=self.metrics.ari_request, socket=self.sockets[node.name])
            for node in settings.ari.nodes
        }) if settings.ari.nodes else None
        self.ari: AriClient | ClusterAri = self.cluster or AriClient(
            settings.ari, observe=self.metrics.ari_request, socket=self.sockets[""])
        self.engine = ping_when_idle(create_async_engine(
            settings.database.url, pool_size=5, max_overflow=5,
            pool_timeout=5, connect_args=connect_args(settings.database.statement_timeout),
        ))
        self.screening = Screening(load=self._load_blocks)
        # A block or unblock by any process (CLI, API, policy) reaches screening at its commit.
        self.blocklist_listener = BlocklistListener(settings.database.url, self.screening.changed)
        self.policy = BlockPolicy(self.engine, settings.policy,
                                  on_blocklist_changed=self.screening.changed)
        self.writer = RecordWriter(self.engine, settings.state_dir / "journal", settings.database,
                                   self.policy)
        self.repository = Repository(self.engine, self.policy, pending=self.writer)
        self.metrics.watch_journal_backlog(lambda: float(self.writer.backlog))
        self.metrics.watch_records(self.writer)
        self.notifier: MqttNotifier | NullNotifier = (
            MqttNotifier(settings.mqtt, on_team_moving=self._team_moving, metrics=self.metrics)
            if settings.mqtt.enabled
            else NullNotifier()
        )
        self.metrics.watch_mqtt_pending(lambda: float(self.notifier.pending))
        self.live = LiveFeed()  # the web console's live events (api/live.py)
        self.sink = FanOut([self.writer, self.notifier, self.live])
        # Callers' locations (location/): read from the PBX as a call arrives, and AML matched
        # to calls. Both watch the calls as a sink does; what they find goes out the same way.
        self.recent_calls = RecentCalls()
        self.locator = NetworkLocator(self.ari, emit=lambda ev: self.sink.call_event(ev))
        self.sink = FanOut([self.sink, self.recent_calls, self.locator])
        self.directory = Directory(settings.agencies)
        self.choices = ChoiceStore(self.engine, settings.database.retry_interval,
                                   gather=settings.database.flush_interval)
        self.desk = OperatorDesk(
            settings.queue.operators, self.ari, self.sink, settings.queue.wrapup,
            settings.queue.operators_start_logged_in,
            on_change=Coalesced(self._operators_changed),
            store=self.choices,
        )
        self.queue = CallQueue(self.desk, on_change=Coalesced(self._queue_changed))
        self.holding = HoldingBridge(self.ari, settings.queue.announce_interval)
        self.stasis = Stasis(
            CallDeps(
                ari=self.ari, settings=settings, screening=self.screening, queue=self.queue,
                desk=self.desk, sink=self.sink, directory=self.directory, holding=self.holding,
                metrics=self.metrics,
                node_lost=self.cluster.node_lost if self.cluster else lambda _call_id: False,
            ),
            cluster=self.cluster,
        )
        self.overflow = Overflow(self.queue, self.desk, settings.queue, send=self.stasis.overflow)
        # Calling citizens back: an ARI application of its own (callbacks.py).
        self.callbacks = CallbackDialer(
            self.ari, settings.ari.app, self.sink, self.desk,
            open_callbacks=lambda: list_callbacks(self.engine, "open", 20, oldest_first=True),
            find_callback=lambda call_id: get_callback(self.engine, call_id),
            recordings=settings.recording.dir if settings.recording.enabled else None)
        self.callback_events = EventStreams([
            EventStream(node_ari.model_copy(update={"app": self.callbacks.app}),
                        on_event=self.callbacks.on_event, on_connect=self.callbacks.resync)
            for node_ari in _per_node(settings)])
        self.aml = AmlIntake(self.recent_calls, self._calls_of, self.sink.call_event,
                             settings.state_dir, registry=self.metrics.registry)
        # Supervisors' listen, whisper and barge: an ARI application of its own (supervision.py).
        self.supervision = Supervision(self.ari, settings, lambda: self.stasis.sessions)
        self.events: EventStream | EventStreams = (
            self._node_streams(settings) if self.cluster else EventStream(
                settings.ari, on_event=self.stasis.on_event, on_connect=self.stasis.resync,
                on_reconnect_attempt=self.metrics.ari_reconnected,
                on_received=self.metrics.ari_event, rest=self.sockets[""],
            ))
        self.clock = DispatchClock(self.repository, self.sink, settings.agency)
        # Past calls go to the records only: MQTT carries what happens now.
        self.fallback = FallbackImporter(settings.fallback_journal, self.writer,
                                         settings.recording.dir)
        self.retention = RetentionSweeper(settings.recording.dir,
                                          settings.recording.retention_days)
        self.orphans = OrphanCloser(self.repository, self.writer, self.sink,
                                    live=lambda: self.stasis.sessions.keys())
        from siaga112.api import Api  # late: the API reads every part built above

        self.api = Api(self)
        self._stop = asyncio.Event()
        self.supervisor = Supervisor()
        # HA (docs/cluster.md): a standby runs its API and the leadership loop only, and
        # becomes the whole daemon (_activate) when it takes the lead.
        self.leadership = (
            Leadership(settings.database.url, settings.ha, on_active=self._activate,
                       on_lost=self._leadership_lost)
            if settings.ha.enabled else None
        )
        self.active = False
        self._stepped_down = False
        self.exit_code = 0

    def _node_streams(self, settings: Settings) -> EventStreams:
        """A cluster: one events socket per node; each connect resyncs that node's calls, a
        socket down long enough loses the node's calls (stasis.py)."""
        streams: EventStreams

        def connected(name: str) -> Callable[[], Awaitable[None]]:
            async def on_connect() -> None:
                self.stasis.node_up(name)
                streams.refresh()
                await self.stasis.resync(name)
            return on_connect

        def disconnected(name: str) -> Callable[[], None]:
            def on_disconnect() -> None:
                streams.refresh()
                self.stasis.node_down(name)
            return on_disconnect

        streams = EventStreams([
            EventStream(settings.ari.model_copy(update={"url": node.url}),
                        on_event=self.stasis.on_event, on_connect=connected(node.name),
                        on_disconnect=disconnected(node.name),
                        on_reconnect_attempt=self.metrics.ari_reconnected,
                        on_received=self.metrics.ari_event, rest=self.sockets[node.name])
            for node in settings.ari.nodes])
        return streams

    @staticmethod
    def _socket_rest(settings: Settings) -> SocketRest | None:
        return (SocketRest(settings.ari.request_timeout)
                if settings.ari.requests_over_socket else None)

    @property
    def role(self) -> Role:
        return Role.ACTIVE if self.active and not self._stepped_down else Role.STANDBY

    # -- wiring callbacks ---------------------------------------------------------------------

    async def _load_blocks(self) -> list[BlockEntry]:
        return await self.repository.active_blocks()

    def _operators_changed(self) -> None:
        ops = self.desk.snapshot()
        self.notifier.operators_changed(ops)
        self.live.operators_changed(ops)
        self.metrics.operators(Counter(op.state for op in ops))
        # `queue` is built after `desk`; the first load happens after both exist.
        queue = getattr(self, "queue", None)
        if queue is not None:
            queue.match()

    def _queue_changed(self) -> None:
        # The head of the queue, as a wall shows it (length counts all): with 500 callers
        # waiting, a snapshot of every entry cost 2.8 ms to build and serialise, up to 20
        # times a second through a burst (docs/mqtt.md). GET /queue still lists them all.
        snapshot = self.queue.snapshot(limit=QUEUE_ENTRIES_PUBLISHED)
        self.notifier.queue_changed(snapshot)
        self.live.queue_changed(snapshot)
        self.metrics.queue_length(snapshot.length)

    async def _team_moving(self, agency: str, payload: dict[str, Any]) -> None:
        """An agency's MQTT `moving` (ids checked by the notifier): taken only for a dispatch
        that exists and is that agency's, of the call it names."""
        call_id, dispatch_id = str(payload["call_id"]), str(payload["dispatch_id"])
        found = await self.repository.agency_dispatch(dispatch_id, agency)
        if found is None or found.call_id != call_id:
            log.warning("mqtt_team_moving_refused", agency=agency, call_id=call_id,
                        dispatch_id=dispatch_id,
                        reason="no such dispatch of this agency" if found is None
                        else "the dispatch is of another call")
            return
        self.team_moving(agency, found.call_id, dispatch_id, "mqtt")

    def call_note(self, call_id: str, text: str, by: str) -> None:
        """An operator's note on a call (the web console): an event like the session's, through
        the journal to the record (its latest note) and out on MQTT."""
        self.sink.call_event(CallEvent(call_id=call_id, seq=0, type=CallEventType.NOTE,
                                       data={"text": text, "by": by}))

    async def _calls_of(self, number: str) -> list[CallRecord]:
        """The newest calls of a number (AML matching after a restart)."""
        return await self.repository.list_calls(caller=number, limit=5)

    def team_moving(self, agency: str, call_id: str, dispatch_id: str, by: str) -> None:
        self.sink.call_event(
            CallEvent(call_id=call_id, seq=0, type=CallEventType.TEAM_MOVING,
                      data={"agency": agency, "dispatch_id": dispatch_id, "by": by})
        )

    # -- running --------------------------------------------------------------------------

    def request_stop(self, signame: str = "SIGTERM") -> None:
        log.info("stop_requested", signal=signame)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    async def start(self) -> None:
        if self.leadership is None:
            await self._activate()
        else:
            self.leadership.start()  # calls _activate when this daemon takes the lead
        await self.api.start()
        log.info("daemon_started", app=self.settings.ari.app, api_port=self.settings.api.port,
                 role=self.role.value)

    async def _activate(self) -> None:
        """Start handling calls: records, MQTT, every background job, ARI (whose connect
        resyncs, and so takes back every live call)."""
        self.active = True
        self.writer.start()
        self.notifier.start()
        jobs = self.supervisor
        jobs.keep("screening", self.screening.run)
        jobs.keep("blocklist-listen", self.blocklist_listener.run)
        jobs.keep("block-expiry", self.policy.run_expiry)
        jobs.keep("operator-choices", self.choices.run)
        jobs.keep("ari-events", self.events.run)
        jobs.keep("callback-events", self.callback_events.run)
        jobs.keep("supervision", self.supervision.run)
        jobs.every("holding-announcements", self.holding.interval, self.holding.announce)
        jobs.every("overflow", TICK, self.overflow.tick)
        jobs.every("stranded-sweep", self.settings.ari.sweep_interval, self.stasis.sweep)
        jobs.every("dispatch-clock", self.settings.agency.overdue_check_interval,
                   self.clock.check_quietly, first_after=0)
        jobs.keep("agency-directory", lambda: keep_synced(
            self.engine, self.directory.all(), self.settings.database.retry_interval))
        jobs.keep("fallback-import", self.fallback.run)
        if self.settings.recording.enabled:
            jobs.every("recording-retention", self.retention.interval,
                       self.retention.sweep_off_loop, first_after=0)
        jobs.keep("orphan-records", lambda: self.orphans.after_resync(self.stasis.resynced))
        if self.leadership is not None:
            log.info("leadership_active", node=self.leadership.node, epoch=self.leadership.epoch)
            self.notifier.leadership_changed(self.leadership.node, Role.ACTIVE.value,
                                             self.leadership.epoch)

    async def _leadership_lost(self) -> None:
        """Another daemon leads now: touch no call any more (its resync has taken them back or
        will), hand nothing back, and stop; run again, this daemon starts as a standby."""
        self._stepped_down = True
        self.stasis.accepting = False
        self.events.stop()
        self.supervision.stop()
        if self.leadership is not None:
            self.notifier.leadership_changed(self.leadership.node, Role.STANDBY.value, None)
        self.exit_code = EXIT_LEADERSHIP_LOST
        self.request_stop("leadership lost")

    async def run(self) -> None:
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop taking calls, hand waiting callers to the dialplan's queue, stop the parts in
        reverse order of starting, each within a bounded time. A standby only stops its API and
        its leadership loop; a leader that stepped down hands nothing back (the calls are the
        new leader's); a leader stopping gracefully releases the lead at the end."""
        if not self.active:
            await self.api.stop()
            if self.leadership is not None:
                await self.leadership.stop(release=False)
            await self.ari.close()
            await self.engine.dispose()
            log.info("daemon_stopped", role=self.role.value)
            return
        handed = 0 if self._stepped_down else await self.stasis.hand_back_waiting()
        log.info("shutdown", handed_back=handed, live=len(self.stasis.sessions))
        self.callback_events.stop()
        self.events.stop()
        self.supervision.stop()
        await self.api.stop()
        await self.supervisor.stop(grace)
        if not self._stepped_down:  # (the socket is closed now: nobody new comes in)
            strays = await self.stasis.hand_back_strays()
            if strays:
                log.info("shutdown_strays_handed_back", calls=strays)
        await self.stasis.close()
        await self.callbacks.stop()
        await self.locator.stop()
        notes = self.stasis.flush_after_end()  # recordings' notes, before the sinks stop
        if notes:
            log.info("shutdown_notes_flushed", notes=notes)
        self.desk.close()
        await self.choices.flush(grace)
        await self.notifier.stop(timeout=grace)
        await self.writer.stop(timeout=grace)
        if self.leadership is not None:
            await self.leadership.stop(release=not self._stepped_down)
        await self.ari.close()
        await self.engine.dispose()
        log.info("daemon_stopped")
