"""The load test's figures: the maths (percentiles, rates, Prometheus histograms), the parsing of
what SIPp wrote (statistics CSV, per-call response times), the report model, and its text for a
person. Pure functions and pydantic models only: no processes, no network.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

# --- maths ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Spread(BaseModel):
    """p50/p95/p99 and max of a sample, in the unit its name says."""

    n: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(
            n=len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=max(values) if values else None,
        )

    def text(self, unit: str, scale: float = 1.0, digits: int = 1) -> str:
        if not self.n:
            return "n/a"

        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v * scale:.{digits}f}"

        return (f"p50 {f(self.p50)} {unit}, p95 {f(self.p95)}, p99 {f(self.p99)}, "
                f"max {f(self.max)} (n={self.n})")


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 for an empty or zero-length window."""
    return count / seconds if seconds > 0 else 0.0


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets [(le, count), ...] (the +Inf
    bucket included), q in 0..1: linear within the bucket, the highest finite bound for the
    +Inf bucket. None when the histogram is empty."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile q must be within 0..1, got {q}")
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


# --- SIPp's files --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatRow:
    """One periodic row of SIPp's statistics CSV: the period's (P) counts at wall time `at`."""

    at: float  # epoch seconds
    since: float  # the previous row's time: this row counts (since, at]
    created: int
    successful: int
    failed: int
    current: int


def _int(row: Mapping[str, str], name: str) -> int:
    value = row.get(name) or "0"
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"SIPp statistics column {name!r} is not a number: {value!r}") from None


def _epoch(current_time: str) -> float:
    """SIPp's CurrentTime column: "date<TAB>time<TAB>epoch"."""
    last = current_time.split("\t")[-1].strip()
    try:
        return float(last)
    except ValueError:
        raise ValueError(f"SIPp statistics CurrentTime not understood: {current_time!r}") from None


def read_stat_rows(path: Path) -> list[StatRow]:
    """Every row of a SIPp statistics CSV (-trace_stat); [] when SIPp wrote none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    out: list[StatRow] = []
    for row in csv.DictReader(text.splitlines(), delimiter=";"):
        at = _epoch(row.get("CurrentTime") or "")
        out.append(StatRow(
            at=at,
            since=out[-1].at if out else at,
            created=_int(row, "OutgoingCall(P)") + _int(row, "IncomingCall(P)"),
            successful=_int(row, "SuccessfulCall(P)"),
            failed=_int(row, "FailedCall(P)"),
            current=_int(row, "CurrentCall"),
        ))
    return out


def failed_by_reason(raw: Mapping[str, str]) -> dict[str, int]:
    """SIPp's cumulative failure counters that are not zero, by reason:
    {"max_udp_retrans": 3, "call_rejected": 1, ...}. FailedCall(C), the total, is left out."""
    out: dict[str, int] = {}
    for column in raw:
        counter = column.startswith("Failed") and column.endswith("(C)")
        if not counter or column == "FailedCall(C)":
            continue
        count = _int(raw, column)
        if count:
            out[_snake(column[len("Failed"):-len("(C)")])] = count
    return out


def _snake(name: str) -> str:
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return out.replace("u_d_p", "udp").replace("t_c_p", "tcp")


@dataclass(frozen=True)
class Rtt:
    """One call's measured response time (-trace_rtt): INVITE to 200 OK, ms, at epoch `at`."""

    at: float
    ms: float


def read_rtt(path: Path, started_at: float) -> list[Rtt]:
    """SIPp's response-time file ("Date_ms;response_time_ms;rtd_no", Date_ms since SIPp's
    start); started_at is SIPp's start as epoch seconds."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines[1:]:
        parts = line.strip().split(";")
        if len(parts) < 2 or not parts[0]:
            continue
        try:
            out.append(Rtt(at=started_at + float(parts[0]) / 1000, ms=float(parts[1])))
        except ValueError:
            raise ValueError(f"{path}: response-time line not understood: {line!r}") from None
    return out


# --- the daemon's /metrics -------------------------------------------------------------------


class MetricsSummary(BaseModel):
    """What the daemon's /metrics said, as deltas over the run where a counter."""

    calls_by_outcome: dict[str, float] = {}
    answer_latency_ms: dict[str, float | None] = {}  # p50/p95/p99 from the histogram
    wait_seconds: dict[str, float | None] = {}
    answered: float = 0  # observations in answer_latency_seconds
    queue_length_max: float = 0  # sampled during the run
    ari_requests: float = 0
    ari_events: dict[str, float] = {}  # received on the websocket over the run, by type
    ari_reconnects: float = 0
    journal_backlog: float = 0
    mqtt_dropped: float = 0
    mqtt_pending: float = 0  # still to publish when the run's last figures were taken
    cpu_seconds: float = 0
    resident_mb: float = 0


@dataclass(frozen=True)
class Scrape:
    """One /metrics text, parsed: samples by (name, sorted labels)."""

    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (n, labels), v in self.samples.items():
            if n == name:
                out[dict(labels).get(label, "")] = v
        return out

    def buckets(self, name: str) -> list[tuple[float, float]]:
        return [(float(le), v) for le, v in self.by_label(f"{name}_bucket", "le").items()]


def _delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def summarise_metrics(before: Scrape, after: Scrape, queue_max: float = 0) -> MetricsSummary:
    ns = "siaga112_"
    def buckets(name: str) -> dict[float, float]:
        """A histogram's buckets over the run (every bound kept, also those that stayed 0)."""
        was = dict(before.buckets(ns + name))
        return {le: v - was.get(le, 0.0) for le, v in after.buckets(ns + name)}

    answer = buckets("answer_latency_seconds")
    wait = buckets("wait_seconds")

    def quantiles(buckets: Mapping[float, float], scale: float) -> dict[str, float | None]:
        items = list(buckets.items())
        out: dict[str, float | None] = {}
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            v = histogram_quantile(items, q)
            out[name] = None if v is None else round(v * scale, 3)
        return out

    return MetricsSummary(
        calls_by_outcome=_delta(after.by_label(ns + "calls_total", "outcome"),
                                before.by_label(ns + "calls_total", "outcome")),
        answer_latency_ms=quantiles(answer, 1000),
        wait_seconds=quantiles(wait, 1),
        answered=after.total(ns + "answer_latency_seconds_count")
        - before.total(ns + "answer_latency_seconds_count"),
        queue_length_max=queue_max,
        ari_requests=after.total(ns + "ari_request_seconds_count")
        - before.total(ns + "ari_request_seconds_count"),
        ari_events=_delta(after.by_label(ns + "ari_events_total", "type"),
                          before.by_label(ns + "ari_events_total", "type")),
        ari_reconnects=after.total(ns + "ari_reconnects_total")
        - before.total(ns + "ari_reconnects_total"),
        journal_backlog=after.value(ns + "journal_backlog"),
        mqtt_dropped=after.total(ns + "mqtt_dropped_total")
        - before.total(ns + "mqtt_dropped_total"),
        mqtt_pending=after.value(ns + "mqtt_pending"),
        cpu_seconds=round(after.value("process_cpu_seconds_total")
                          - before.value("process_cpu_seconds_total"), 2),
        resident_mb=round(after.value("process_resident_memory_bytes") / 2**20, 1),
    )


# --- the report ------------------------------------------------------------------------------


class Point(BaseModel):
    """One second of the run, from its start."""

    t: float
    offered: int = 0  # calls SIPp started in this second
    answered: int = 0  # calls answered (200 OK) in this second
    failed: int = 0
    queue: float | None = None  # callers waiting for an operator (daemon path)
    latency_ms: float | None = None  # median INVITE -> 200 OK of the calls answered


class GroupReport(BaseModel):
    """One kind of caller in the run (a trunk's citizens, a prank dialer, ...)."""

    name: str
    offered: int
    answered: int
    successful: int
    failed: int
    failed_by_reason: dict[str, int] = {}
    hung_up_by_pbx: int = 0  # the far side's BYE: the daemon or an operator ended the call
    timed_out: bool = False
    exit: str = ""
    run_dir: str = ""


FLOOR_SERVICE = "ARI floor"  # service_cpu_seconds' key of the floor's CPU (floor path)


class LoadReport(BaseModel):
    name: str
    path: str  # "daemon", "dialplan" or "floor" (runner.CallPath)
    started_at: str
    duration_s: float
    offer_window_s: float
    plan: dict[str, object] = {}
    groups: list[GroupReport] = []
    offered: int = 0
    answered: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = {}
    offered_cps: float = 0.0
    answered_cps: float = 0.0
    sip_answer_ms: Spread = Spread()  # INVITE -> 200 OK as the callers saw it (SIPp)
    answer_latency_ms: Spread = Spread()  # StasisStart -> answered, the daemon's records
    # StasisStart -> the citizen answered, the measure: 0 for the dialplan's answers
    # (before Stasis()), the take-in for the daemon's own (records.RunRecords)
    stasis_to_answer_ms: Spread = Spread()
    answered_by: dict[str, int] = {}  # "dialplan" / "daemon" / "unsaid": calls each
    # Of the slowest 1% take-ins, the share the daemon was ready to run with no core free.
    take_in_cpu_share: float | None = None
    # Each take-in less its wait for a core: the daemon's own queue and work.
    take_in_own_ms: Spread = Spread()
    event_age_ms: Spread = Spread()  # StasisStart's age when routed, by Asterisk's timestamp
    wait_to_operator_s: Spread = Spread()  # arrival -> operator connected, the records
    records: int = 0
    dispositions: dict[str, int] = {}
    connected: int = 0  # calls that reached an operator
    occupancy: dict[str, float] = {}  # per operator, share of the run on calls; "all"
    occupancy_source: str = ""
    metrics: MetricsSummary | None = None
    # Failures that SIPp cannot see (daemon path): error lines in the daemon's log during the
    # run (call_handler_failed, tracebacks), and records whose disposition is not one the plan
    # expects (a hand-back is "fallback"; a call never ended is "open").
    daemon_error_lines: int = 0
    daemon_errors: list[str] = []  # the first few, for the reader
    wrong_dispositions: dict[str, int] = {}
    pbx_cpu_seconds: float | None = None  # Asterisk's CPU over the run (local test PBX)
    sipp_cpu_seconds: float | None = None  # the SIPp phones' own (callers and desk)
    # PostgreSQL's (with its backends) and Mosquitto's CPU over the run, local stack only.
    service_cpu_seconds: dict[str, float] = {}
    # The ARI floor's own counts (floor path): "event <type>", "<METHOD> <resource> <status>",
    # "faults" (a handler that raised).
    floor_counts: dict[str, int] = {}
    timeline: list[Point] = Field(default_factory=list)
    notes: list[str] = []

    def floor_not_2xx(self) -> dict[str, int]:
        """The floor's requests that Asterisk did not answer 2xx, by method, resource, status."""
        return {k: v for k, v in self.floor_counts.items()
                if k.split(" ")[0].isupper() and not k.rsplit(" ", 1)[-1].startswith("2")}

    @property
    def clean(self) -> bool:
        """No failed call, every SIPp ended by itself, no error line in the daemon's log,
        and every record's disposition one the plan expects."""
        return (self.failed == 0 and not any(g.timed_out for g in self.groups)
                and self.daemon_error_lines == 0 and not self.wrong_dispositions)

    def per_call(self) -> dict[str, float | None]:
        """Costs per offered call: daemon CPU (ms), ARI requests and events, Asterisk's,
        PostgreSQL's and Mosquitto's CPU (ms)."""
        n = self.offered or 0
        m = self.metrics

        def each(total: float | None, scale: float = 1.0) -> float | None:
            return None if total is None or not n else round(total * scale / n, 2)

        floor = self.floor_counts
        floor_requests = sum(v for k, v in floor.items() if k.split(" ")[0].isupper())
        floor_events = sum(v for k, v in floor.items() if k.startswith("event "))
        return {
            "daemon_cpu_ms": each(m.cpu_seconds, 1000) if m else None,
            "floor_cpu_ms": each(self.service_cpu_seconds.get(FLOOR_SERVICE), 1000),
            "ari_requests": (each(m.ari_requests) if m
                             else each(floor_requests) if floor_requests else None),
            "ari_events": (each(sum(m.ari_events.values())) if m and m.ari_events
                           else each(floor_events) if floor_events else None),
            "pbx_cpu_ms": each(self.pbx_cpu_seconds, 1000),
            "sipp_cpu_ms": each(self.sipp_cpu_seconds, 1000),
            "postgres_cpu_ms": each(self.service_cpu_seconds.get("PostgreSQL"), 1000),
            "mosquitto_cpu_ms": each(self.service_cpu_seconds.get("Mosquitto"), 1000),
        }


def timeline(
    start: float,
    stats: Iterable[StatRow],
    rtts: Iterable[Rtt],
    queue: Iterable[tuple[float, float]] = (),
) -> list[Point]:
    """Per-second points from SIPp's periodic rows, the per-call response times and sampled
    queue lengths (epoch, length), all on epoch seconds, start being the run's start."""
    points: dict[int, Point] = {}

    def at(epoch: float) -> Point:
        second = max(0, int(epoch - start))
        return points.setdefault(second, Point(t=second))

    for row in stats:
        p = at((row.since + row.at) / 2)  # the middle of the period the row counts
        p.offered += row.created
        p.failed += row.failed
    latencies: dict[int, list[float]] = {}
    for r in rtts:
        p = at(r.at)
        p.answered += 1
        latencies.setdefault(int(p.t), []).append(r.ms)
    for second, values in latencies.items():
        points[second].latency_ms = percentile(values, 50)
    for epoch, length in queue:
        p = at(epoch)
        p.queue = length if p.queue is None else max(p.queue, length)
    return [points[k] for k in sorted(points)]


def occupancy(
    talk: Mapping[str, float], operators: Sequence[str], span_s: float
) -> dict[str, float]:
    """Share of the span each operator spent on calls (talk seconds by operator), and "all"."""
    if span_s <= 0 or not operators:
        return {}
    out = {op: round(min(1.0, talk.get(op, 0.0) / span_s), 3) for op in operators}
    out["all"] = round(sum(out[op] for op in operators) / len(operators), 3)
    return out


def _counts(counts: Mapping[str, float]) -> dict[str, int]:
    return {k: round(v) for k, v in counts.items()}


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:g}"


def _pct(v: float) -> str:
    return f"{v * 100:.0f}%"


_PATHS = {"daemon": "the daemon", "dialplan": "dialplan app_queue",
          "floor": "the ARI floor: the daemon's conversation with Asterisk alone"}


def render(report: LoadReport) -> str:
    """The report for a person, a few lines per section."""
    r = report
    lines = [
        f"== {r.name} ({_PATHS.get(r.path, r.path)}) ==",
        f"  offered   {r.offered} calls in {r.offer_window_s:.1f} s = {r.offered_cps:.1f} calls/s "
        f"(run {r.duration_s:.1f} s)",
        f"  answered  {r.answered} = {r.answered_cps:.1f} calls/s",
        f"  failed    {r.failed}" + (f"  {r.failed_by_reason}" if r.failed_by_reason else ""),
    ]
    for g in r.groups:
        extra = ", timed out" if g.timed_out else ""
        reasons = f" {g.failed_by_reason}" if g.failed_by_reason else ""
        lines.append(
            f"    {g.name:<10} offered {g.offered}, answered {g.answered}, failed {g.failed}"
            f"{reasons}, ended by the PBX {g.hung_up_by_pbx}{extra}"
        )
    lines.append(f"  answer (INVITE->200, callers)   {r.sip_answer_ms.text('ms')}")
    if r.path == "daemon":
        if r.answered_by:
            lines.append(f"  StasisStart->answer (records) "
                         f"{r.stasis_to_answer_ms.text('ms', digits=2)}; answered by "
                         f"{answered_by_text(r.answered_by)}")
        lines.append(f"  taken in (StasisStart->session, records) "
                     f"{r.answer_latency_ms.text('ms', digits=2)}")
        if r.take_in_cpu_share is not None:
            lines.append(f"    of the slowest 1%, waiting for a CPU (the daemon ready, no core "
                         f"free) {r.take_in_cpu_share:.0%}")
        if r.take_in_own_ms.n:
            lines.append(f"    less each one's wait for a CPU (the daemon's own queue and work) "
                         f"{r.take_in_own_ms.text('ms', digits=2)}")
        if r.event_age_ms.n:
            lines.append(f"  StasisStart's age when routed (Asterisk's timestamp) "
                         f"{r.event_age_ms.text('ms', digits=1)}")
    lines.append(f"  wait to operator                {r.wait_to_operator_s.text('s', digits=2)}")
    if r.dispositions:
        lines.append(f"  records   {r.records}: {r.dispositions}; reached an operator "
                     f"{r.connected}")
    elif r.connected:
        lines.append(f"  reached an operator {r.connected}")
    if r.occupancy:
        each = " ".join(f"{k} {_pct(v)}" for k, v in r.occupancy.items() if k != "all")
        lines.append(f"  occupancy {_pct(r.occupancy.get('all', 0))} ({r.occupancy_source}): "
                     f"{each}")
    m = r.metrics
    if m is not None:
        lines.append(
            f"  /metrics  calls {_counts(m.calls_by_outcome)}; answered {m.answered:.0f}, "
            f"answer latency ms {m.answer_latency_ms}; wait s {m.wait_seconds}; queue max "
            f"{m.queue_length_max:.0f}; ARI requests {m.ari_requests:.0f}, reconnects "
            f"{m.ari_reconnects:.0f}; journal backlog {m.journal_backlog:.0f}; MQTT dropped "
            f"{m.mqtt_dropped:.0f}, still to publish {m.mqtt_pending:.0f}; daemon CPU "
            f"{m.cpu_seconds:.1f} s, RSS {m.resident_mb} MB"
        )
        if m.ari_events:
            top = sorted(m.ari_events.items(), key=lambda kv: -kv[1])
            lines.append("  ARI events " + ", ".join(f"{k} {v:.0f}" for k, v in top))
    pc = r.per_call()
    if any(v is not None for v in pc.values()):
        lines.append("  per call  " + ", ".join(
            f"{label} {_num(pc[key])}" for key, label in (
                ("daemon_cpu_ms", "daemon CPU ms"), ("floor_cpu_ms", "ARI floor CPU ms"),
                ("ari_requests", "ARI requests"),
                ("ari_events", "ARI events"), ("pbx_cpu_ms", "Asterisk CPU ms"),
                ("sipp_cpu_ms", "SIPp phones CPU ms"),
                ("postgres_cpu_ms", "PostgreSQL CPU ms"), ("mosquitto_cpu_ms", "Mosquitto CPU ms"))
            if pc[key] is not None))
    if r.floor_counts:
        lines.append(f"  ARI floor: requests not answered 2xx "
                     f"{r.floor_not_2xx()}; handlers that raised {r.floor_counts.get('faults', 0)}")
    if r.path == "daemon":
        lines.append(f"  daemon log error lines {r.daemon_error_lines}; records with a "
                     f"disposition the plan does not expect {r.wrong_dispositions or 0}")
        lines += [f"    {e}" for e in r.daemon_errors]
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)


def answered_by_text(answered_by: dict[str, int]) -> str:
    """"the dialplan 95, the daemon 5": who answered how many calls (records.answered_by)."""
    names = {"dialplan": "the dialplan (before Stasis())", "daemon": "the daemon",
             "unsaid": "not said"}
    return ", ".join(f"{names.get(k, k)} {v}" for k, v in sorted(answered_by.items()))
