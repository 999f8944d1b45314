"""Events out over MQTT (the topic tree and buffer: mqtt_buffer.py; agencies' messages in:
mqtt_inbound.py): every step of every call, the queue and the operators, for dashboards
and agency systems; and the one thing agencies tell us back (their team is moving).

The emit methods are synchronous and never block nor raise into the call path: they put the
event on a bounded in-memory buffer. ``run()`` publishes it over our own MQTT connection
(mqtt_wire.py), reconnecting with backoff while the broker is down. The buffer rule (docs/mqtt.md):

- events (history) are kept up to ``buffer_max``; past that the OLDEST is dropped and counted;
- retained state topics (queue, operators) keep only their latest value: coalesced, never lost;
  a snapshot equal to the last one emitted for its topic is not sent again, and every (re)connect
  publishes the latest of each again, so a broker that lost its retained messages has them back;
- everything kept is delivered in order when the broker is back (at least once: consumers
  dedupe by ``event_id``).

Call the emit methods from the event loop's thread (the call path is asyncio).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from siaga112.metrics import Metrics
from siaga112.model import (
    CallEvent,
    CallEventType,
    OperatorEvent,
    OperatorSnapshot,
    QueueSnapshot,
    event_json,
    utcnow,
)
from siaga112.mqtt_buffer import Message, OutBuffer, Topics, _segment_ok
from siaga112.mqtt_inbound import Refused, read_team_moving
from siaga112.mqtt_wire import Connection, MqttError, connect
from siaga112.settings import MqttSettings

log = structlog.get_logger(__name__)

# CallEvents that concern an agency: also published on {prefix}/agencies/{code}/dispatches.
AGENCY_EVENTS = frozenset(
    {
        CallEventType.AGENCY_REQUESTED,
        CallEventType.AGENCY_JOINED,
        CallEventType.AGENCY_ACCEPTED,
        CallEventType.TEAM_MOVING,
        CallEventType.OVERDUE,
    }
)
DROP_LOG_INTERVAL = 5.0  # seconds between two "dropped" log lines
PUBLISH_WINDOW = 20  # events in flight at once
LOGGED = 200  # characters of a refused value or payload put in a log line

def _stand_in(call_id: str) -> str:
    """A topic level for a call id that cannot be one: stable for the same id."""
    digest = hashlib.sha256(call_id.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    return f"invalid-{digest}"


TeamMovingCallback = Callable[[str, dict[str, Any]], Awaitable[None]]


class NullNotifier:
    """Publishes nowhere: the notifier when MQTT is not configured (mqtt.enabled = false)."""

    dropped = 0
    pending = 0

    def call_event(self, event: CallEvent) -> None:
        pass

    def operator_event(self, event: OperatorEvent) -> None:
        pass

    def queue_changed(self, snapshot: QueueSnapshot) -> None:
        pass

    def operators_changed(self, operators: list[OperatorSnapshot]) -> None:
        pass

    def leadership_changed(self, node: str, role: str, epoch: int | None) -> None:
        pass

    def start(self) -> None:
        pass

    async def run(self) -> None:
        pass

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (bounded shutdown)
        pass


class MqttNotifier:
    """Publishes call, queue and operator events to MQTT; receives agencies' "team moving"."""

    def __init__(
        self,
        settings: MqttSettings,
        on_team_moving: TeamMovingCallback | None = None,
        metrics: Metrics | None = None,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 5.0,
        client_id: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        linger: float | None = None,
    ) -> None:
        self._settings = settings
        self._on_team_moving = on_team_moving
        self._metrics = metrics
        self._reconnect_initial = reconnect_initial
        self._reconnect_max = reconnect_max
        self._sleep = sleep  # the reconnect backoff's wait; tests pass one they control
        # A window that is not full waits this long for more (mqtt.linger). Measured with
        # aiomqtt (before mqtt_wire.py) and Mosquitto here, one message every 1/150 s
        # (docs/load-testing.md): 0.27 ms of CPU per message with 20 ms, 0.09 with 100 ms,
        # 0.06 with 200 ms; a whole call at 10 calls/s 6% less with 300 ms than with 100.
        self._linger = settings.linger if linger is None else linger
        self.topics = Topics(settings.topic_prefix)
        # A fixed client id with a persistent session: the broker keeps our subscription and
        # queues agencies' QoS 1 messages while we reconnect.
        self._client_id = client_id or f"{self.topics.prefix.replace('/', '-')}-notifier"
        self._buffer = OutBuffer(settings.buffer_max)
        # Retained state topic -> (what it says, the message): the latest emitted, re-published
        # on every connect; an emit that says the same again is not sent.
        self._state: dict[str, tuple[bytes, Message]] = {}
        self._operators_seen: dict[str, OperatorSnapshot] = {}  # the last snapshot taken
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.dropped = 0  # events dropped since start, all told
        self._drops_unlogged = 0
        self._last_drop_log = float("-inf")

    @property
    def pending(self) -> int:
        """Entries waiting to be published."""
        return len(self._buffer)

    # -- emit (synchronous, never blocks) ---------------------------------------------------

    def call_event(self, event: CallEvent) -> None:
        """On the call's own topic only: `{p}/calls/+/events` is every call's (docs/mqtt.md).
        A second copy of each event on one all-calls topic was half of what the daemon spent on
        MQTT; a subscriber's wildcard gives the same stream."""
        payload = event_json(event)
        if _segment_ok(event.call_id):
            topic = self.topics.call(event.call_id)
        else:  # still on the all-calls wildcard, under a stand-in that is one topic level
            topic = self.topics.call(_stand_in(event.call_id))
            log.error("mqtt_bad_topic_level", call_id=event.call_id[:LOGGED], event_type=event.type,
                      topic=topic)
        messages = [Message(topic, payload)]
        # An OVERDUE of kind "complaint" concerns the centre, not an agency: no agency topic.
        if event.type in AGENCY_EVENTS and event.data.get("agency") is not None:
            code = str(event.data["agency"])
            if _segment_ok(code):
                messages.append(Message(self.topics.agency_dispatches(code), payload))
            else:
                log.error(
                    "mqtt_bad_agency_code",
                    agency=code,
                    event_type=event.type,
                    call_id=event.call_id,
                )
        self._add_event(tuple(messages))

    def operator_event(self, event: OperatorEvent) -> None:
        self._add_event((Message(self.topics.operator_events, event_json(event)),))

    def queue_changed(self, snapshot: QueueSnapshot) -> None:
        said = snapshot.model_dump_json(exclude={"at"}).encode()  # `at` alone is no change
        self._set_state(Message(self.topics.queue, snapshot.model_dump_json().encode(), True),
                        said)

    def operators_changed(self, operators: list[OperatorSnapshot]) -> None:
        for op in operators:
            if self._operators_seen.get(op.operator) is op:
                continue  # the desk gives an operator's snapshot again while it is the same
            self._operators_seen[op.operator] = op
            if not _segment_ok(op.operator):
                log.error("mqtt_bad_topic_level", operator=op.operator)
                continue
            payload = op.model_dump_json().encode()
            self._set_state(Message(self.topics.operator(op.operator), payload, True), payload)

    def leadership_changed(self, node: str, role: str, epoch: int | None) -> None:
        """HA (docs/cluster.md): an event on events/leadership; the active one also retained
        on `leader`."""
        payload = json.dumps({"node": node, "role": role, "epoch": epoch,
                              "at": utcnow().isoformat()}).encode()
        self._add_event((Message(self.topics.leadership, payload),))
        if role == "active":
            self._set_state(Message(self.topics.leader, payload, True), payload)

    def _add_event(self, messages: tuple[Message, ...]) -> None:
        if self._stopping:  # nowhere to go: counted as dropped, and said
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.mqtt_dropped(1)
            log.warning("mqtt_event_after_stop", topic=messages[0].topic,
                        dropped_total=self.dropped)
            return
        dropped = self._buffer.add_event(messages)
        if dropped:
            self._count_drops(dropped)
        self._wake.set()

    def _set_state(self, message: Message, said: bytes) -> None:
        """Coalesced per topic; not sent when it says what the topic's latest already says."""
        if self._stopping:
            return
        latest = self._state.get(message.topic)
        if latest is not None and latest[0] == said:
            return
        self._state[message.topic] = (said, message)
        self._buffer.set_state(message)
        self._wake.set()

    def _count_drops(self, count: int) -> None:
        self.dropped += count
        self._drops_unlogged += count
        if self._metrics is not None:
            self._metrics.mqtt_dropped(count)
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._log_drops()
            self._last_drop_log = now

    def _log_drops(self) -> None:
        if self._drops_unlogged:
            log.warning(
                "mqtt_events_dropped",
                dropped=self._drops_unlogged,
                dropped_total=self.dropped,
                buffer_max=self._buffer.max_events,
            )
            self._drops_unlogged = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the publisher in a background task of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="mqtt-notifier")

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (bounded shutdown)
        """Take no new events, publish what is buffered for up to timeout, say offline, go."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel("mqtt notifier stop timed out")
            await asyncio.gather(task, return_exceptions=True)
            log.warning("mqtt_stopped_with_unsent", unsent=len(self._buffer), timeout=timeout)
        self._log_drops()

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff, until stop() and the buffer is empty."""
        delay = self._reconnect_initial
        while True:
            try:
                await self._session()
                return  # stopping, and the buffer is flushed
            except MqttError as exc:
                if self.connected:
                    delay = self._reconnect_initial
                    log.warning("mqtt_disconnected", error=str(exc), pending=len(self._buffer))
                else:
                    log.info(
                        "mqtt_connect_failed",
                        error=str(exc),
                        retry_in=delay,
                        host=self._settings.host,
                        port=self._settings.port,
                    )
            except Exception:  # a bug of ours must not end event delivery for good
                log.exception("mqtt_notifier_failed", pending=len(self._buffer))
            self.connected = False
            if self._stopping and not self._buffer:
                return
            await self._sleep(delay)
            delay = min(delay * 2, self._reconnect_max)

    async def _session(self) -> None:
        s = self._settings
        conn = await connect(
            s.host,
            s.port,
            client_id=self._client_id,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            will=Message(self.topics.status, b"offline", retain=True),
            clean_session=False,
            keepalive=10,
            timeout=10,
        )
        try:
            self.connected = True
            log.info("mqtt_connected", host=s.host, port=s.port, pending=len(self._buffer))
            self._log_drops()
            await conn.subscribe(self.topics.team_moving)
            await conn.publish([Message(self.topics.status, b"online", retain=True)])
            for _, message in self._state.values():  # the broker may have lost them
                self._buffer.set_state(message)
            reader = asyncio.create_task(self._read(conn), name="mqtt-inbound")
            try:
                await self._publish_loop(conn, reader)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            await conn.publish([Message(self.topics.status, b"offline", retain=True)])
        finally:
            await conn.close()

    async def _publish_loop(self, conn: Connection, reader: asyncio.Task[None]) -> None:
        """Publish the buffer's head in windows; return when stopping and empty.

        The reader task ends with MqttError when the connection drops: that wakes us even in
        the middle of a window waiting for its PUBACK.
        """
        while True:
            batch = self._buffer.head(PUBLISH_WINDOW)
            if not batch:
                if self._stopping:
                    return
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader.done():
                    return
                continue
            if len(batch) < PUBLISH_WINDOW and self._linger > 0 and not self._stopping:
                await asyncio.wait({reader}, timeout=self._linger)  # a fuller window
                if reader.done():
                    return
                batch = self._buffer.head(PUBLISH_WINDOW)
                if not batch:
                    continue
            # One write; done when the broker has the window's last message (it acknowledges
            # QoS 1 messages in the order it got them: MQTT 3.1.1, 4.6).
            send = conn.publish(m for entry in batch for m in entry.messages)
            either: set[asyncio.Future[Any]] = {send, reader}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not send.done():
                send.cancel()
                return  # the reader's error says why
            if send.exception() is not None:
                raise send.exception()  # type: ignore[misc]  # the batch stays, is sent again
            self._buffer.remove(batch)

    async def _read(self, conn: Connection) -> None:
        while True:
            message = await conn.receive()
            if message.too_large:
                log.error("mqtt_inbound_too_large", topic=message.topic[:LOGGED],
                          size=message.too_large)
                continue
            try:
                await self._inbound(message.topic, message.payload)
            except Exception:  # one message, whatever it holds, never ends the listener
                log.exception("mqtt_inbound_failed", topic=message.topic[:LOGGED])

    async def _inbound(self, topic: str, payload: Any) -> None:
        """One agency message: checked (read_team_moving), then handed on; a message that
        fails a check is refused with a log line naming what was wrong."""
        read = read_team_moving(self.topics, topic, payload)
        if isinstance(read, Refused):
            log.error(read.event, topic=topic[:LOGGED], agency=read.agency, reason=read.reason,
                      payload=read.shown, errors=read.errors)
            return
        moving = read.payload
        agency = read.agency
        log.info(
            "mqtt_team_moving",
            agency=agency,
            call_id=moving.call_id,
            dispatch_id=moving.dispatch_id,
        )
        if self._on_team_moving is None:
            return
        try:
            await self._on_team_moving(agency, moving.model_dump())
        except Exception:
            log.exception("mqtt_team_moving_handler_failed", agency=agency, call_id=moving.call_id)
