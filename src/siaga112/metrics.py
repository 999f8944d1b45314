"""Prometheus metrics: one registry per Metrics object, handed to whoever counts by constructor.

No module globals: two daemons (or two tests) in one process keep separate figures. The HTTP
API serves ``render()`` at /metrics with ``CONTENT_TYPE``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypedDict

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from siaga112.model import Disposition, OperatorState

NAMESPACE = "siaga112"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds a citizen waits in the queue: a 112 call should be answered within seconds.
WAIT_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0)
# One ARI HTTP request on loopback: milliseconds, with a tail up to the request timeout.
ARI_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# StasisStart to the call taken in by its session (the dialplan has answered before Stasis()).
ANSWER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class RecordsState(Protocol):
    """What the records writer tells about itself (records.writer.RecordWriter)."""

    @property
    def dropped(self) -> int: ...

    @property
    def quarantined(self) -> int: ...

    @property
    def journal_bytes(self) -> int: ...

    @property
    def problems(self) -> Sequence[str]: ...


class _RecordsCollector(Collector):
    """Reads the writer's counters at each scrape (they live in the writer, counted once)."""

    def __init__(self) -> None:
        self.source: RecordsState | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        src = self.source
        if src is None:
            return
        yield CounterMetricFamily(
            f"{NAMESPACE}_records_dropped",
            "Records lost because the journal was full or the disk refused them.",
            value=src.dropped,
        )
        yield CounterMetricFamily(
            f"{NAMESPACE}_records_quarantined",
            "Journal lines set aside in the quarantine file (unreadable or refused).",
            value=src.quarantined,
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_journal_bytes", "Bytes of the local journal on disk.",
            value=src.journal_bytes,
        )
        problems = list(src.problems)
        yield GaugeMetricFamily(
            f"{NAMESPACE}_records_degraded",
            "1 while records are at risk (journal full or unwritable, quarantine unwritable).",
            value=1 if problems else 0,
        )
        each = GaugeMetricFamily(
            f"{NAMESPACE}_records_problem", "Each problem putting records at risk now.",
            labels=["problem"],
        )
        for problem in problems:
            each.add_metric([problem], 1)
        yield each


class _Common(TypedDict):
    namespace: str
    registry: CollectorRegistry


ARI_EVENT_TYPES_MAX = 64  # ARI has about 50 event types

class Metrics:
    """Typed methods over the project's metrics, all in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
        kw: _Common = {"namespace": NAMESPACE, "registry": self.registry}
        self._calls = Counter("calls", "Calls ended, by outcome (disposition).", ["outcome"], **kw)
        self._queue_length = Gauge("queue_length", "Calls waiting for an operator.", **kw)
        self._wait = Histogram(
            "wait_seconds", "Seconds a call waited in the queue.", buckets=WAIT_BUCKETS, **kw
        )
        self._ari_request = Histogram(
            "ari_request_seconds",
            "Seconds per ARI request, by HTTP method and by what carried it (via: socket, the "
            "events websocket; http).",
            ["method", "via"],
            buckets=ARI_BUCKETS,
            **kw,
        )
        self._ari_reconnects = Counter(
            "ari_reconnects", "Reconnections of the ARI events websocket.", **kw
        )
        self._ari_events = Counter(
            "ari_events", "ARI events received on the websocket, by type.", ["type"], **kw
        )
        # The labelled children, looked up once: prometheus_client's labels() takes a lock
        # and builds a key on every call (an ARI request and an ARI event each).
        self._ari_event_children: dict[str, Any] = {}
        self._ari_request_children: dict[str, Any] = {}
        self._journal_backlog = Gauge(
            "journal_backlog", "Records in the local journal not yet in PostgreSQL.", **kw
        )
        self._mqtt_pending = Gauge(
            "mqtt_pending", "MQTT events and state snapshots not yet published.", **kw
        )
        self._mqtt_dropped = Counter(
            "mqtt_dropped", "MQTT events dropped because the buffer was full.", **kw
        )
        self._operators = Gauge("operators", "Operators in each state.", ["state"], **kw)
        self._phones_lost = Counter(
            "desk_phones_lost",
            "Desk phones that sent no media for queue.desk_media_timeout in a call, taken as "
            "dead (the citizen requeued, the operator paused), by operator.",
            ["operator"], **kw)
        self._answer_latency = Histogram(
            "answer_latency_seconds",
            "Seconds from StasisStart to the call taken in (answered by the dialplan before).",
            buckets=ANSWER_BUCKETS,
            **kw,
        )
        # One child per state, looked up once (labels() locks and builds a key each time; the
        # desk's counts are set on every change of an operator).
        self._operator_children = {state: self._operators.labels(state=state.value)
                                   for state in OperatorState}
        for child in self._operator_children.values():
            child.set(0)
        self._records = _RecordsCollector()
        self.registry.register(self._records)

    def call_ended(self, outcome: Disposition) -> None:
        self._calls.labels(outcome=Disposition(outcome).value).inc()

    def queue_length(self, length: int) -> None:
        self._queue_length.set(length)

    def call_waited(self, seconds: float) -> None:
        self._wait.observe(seconds)

    def ari_request(self, method: str, seconds: float, via: str = "http") -> None:
        key = method + via
        child = self._ari_request_children.get(key)
        if child is None:  # our own code's few methods (GET, POST, PUT, DELETE), two ways
            child = self._ari_request_children[key] = self._ari_request.labels(
                method=method.upper(), via=via)
        child.observe(seconds)

    def ari_reconnected(self) -> None:
        self._ari_reconnects.inc()

    def ari_event(self, type_: str) -> None:
        """Count one event. The type comes from outside: at most ARI_EVENT_TYPES_MAX distinct
        labels of plain letters; anything else is counted as "other"."""
        child = self._ari_event_children.get(type_)
        if child is None:
            if len(self._ari_event_children) >= ARI_EVENT_TYPES_MAX or not (
                    type_.isascii() and type_.isalpha() and len(type_) <= 64):
                type_ = "other"
            child = self._ari_events.labels(type=type_)
            if type_ != "other":
                self._ari_event_children[type_] = child
        child.inc()

    def watch_journal_backlog(self, backlog: Callable[[], float]) -> None:
        """Read the journal's backlog at each scrape from this callback."""
        self._journal_backlog.set_function(backlog)

    def watch_mqtt_pending(self, pending: Callable[[], float]) -> None:
        """Read the MQTT out-buffer's length at each scrape from this callback."""
        self._mqtt_pending.set_function(pending)

    def watch_records(self, source: RecordsState) -> None:
        """Read dropped, quarantined, journal bytes and problems from source at each scrape."""
        self._records.source = source

    def mqtt_dropped(self, count: int = 1) -> None:
        self._mqtt_dropped.inc(count)

    def operators(self, counts: Mapping[OperatorState, int]) -> None:
        """Set the number of operators per state; states absent from counts are 0."""
        for state, child in self._operator_children.items():
            child.set(counts.get(state, 0))

    def desk_phone_lost(self, operator: str) -> None:
        """One of queue.operators (a name the settings checked): a bounded label."""
        self._phones_lost.labels(operator=operator).inc()

    def call_answered(self, latency_seconds: float) -> None:
        self._answer_latency.observe(latency_seconds)

    def render(self) -> bytes:
        """The text exposition format, for GET /metrics."""
        return generate_latest(self.registry)
