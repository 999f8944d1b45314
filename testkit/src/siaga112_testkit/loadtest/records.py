"""What the PBX and the daemon recorded about the run's calls: the calls and their ANSWERED
events in PostgreSQL (daemon path), and app_queue's queue_log (dialplan path)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.records.engine import QUERY_TIMEOUT, connect_args

_CALLS = text("""
SELECT c.call_id, c.operator, c.disposition, c.wait_seconds, c.talk_seconds,
       c.operator_answered_at IS NOT NULL AS connected, c.ended_at IS NOT NULL AS ended,
       a.latency_ms, a.cpu_wait_ms, a.event_age_ms, c.caller, a.answered_by
  FROM calls c
  LEFT JOIN LATERAL (
       SELECT (e.data->>'latency_ms')::float AS latency_ms,
              (e.data->>'cpu_wait_ms')::float AS cpu_wait_ms,
              (e.data->>'event_age_ms')::float AS event_age_ms,
              e.data->>'answered_by' AS answered_by
         FROM call_events e
        WHERE e.call_id = c.call_id AND e.type = 'answered' LIMIT 1) a ON true
 WHERE c.caller = ANY(:callers) AND c.arrived_at >= :since
""")


@dataclass(frozen=True)
class CallRow:
    call_id: str
    operator: str | None
    disposition: str | None
    wait_seconds: float | None
    talk_seconds: float | None
    connected: bool
    ended: bool
    latency_ms: float | None  # StasisStart routed -> taken in by its session
    cpu_wait_ms: float | None = None  # of latency_ms, the daemon ready and no core free
    event_age_ms: float | None = None  # the StasisStart's age when routed (Asterisk's clock)
    caller: str | None = None  # E.164
    # "dialplan": answered before Stasis() (its StasisStart found the channel Up);
    # "daemon": answered by the take-in's first request; None: not said (an older daemon)
    answered_by: str | None = None


@dataclass
class RunRecords:
    calls: list[CallRow] = field(default_factory=list)

    @property
    def answer_latencies_ms(self) -> list[float]:
        return [c.latency_ms for c in self.calls if c.latency_ms is not None]

    @property
    def stasis_to_answer_ms(self) -> list[float]:
        """StasisStart -> the citizen answered, the issue's own measure: 0 for a call the
        dialplan answered before Stasis() (its answer came before the StasisStart, never
        after it), the take-in for one the daemon answered (its answer is the take-in's
        first request, inside it) or that does not say who answered."""
        out: list[float] = []
        for c in self.calls:
            if c.answered_by == "dialplan":
                out.append(0.0)
            elif c.latency_ms is not None:
                out.append(c.latency_ms)
        return out

    def answered_by(self) -> dict[str, int]:
        """How many calls each side answered ("unsaid" for a record that does not say)."""
        return dict(Counter(c.answered_by or "unsaid" for c in self.calls
                            if c.answered_by or c.latency_ms is not None))

    @property
    def own_latencies_ms(self) -> list[float]:
        """Each take-in less its wait for a core: the daemon's own queue of work and its work
        (what is left when the host's other processes are not counted)."""
        return [max(0.0, c.latency_ms - c.cpu_wait_ms) for c in self.calls
                if c.latency_ms is not None and c.cpu_wait_ms is not None]

    @property
    def event_ages_ms(self) -> list[float]:
        return [c.event_age_ms for c in self.calls if c.event_age_ms is not None]

    def slowest_cpu_share(self, share: float = 0.01) -> float | None:
        """Of the take-in of the slowest `share` of calls, the part the daemon spent ready
        to run with no core free (None without the figures)."""
        timed = sorted((c for c in self.calls
                        if c.latency_ms is not None and c.cpu_wait_ms is not None),
                       key=lambda c: c.latency_ms or 0.0)
        if not timed:
            return None
        slow = timed[len(timed) - max(1, round(len(timed) * share)):]
        total = sum(c.latency_ms or 0.0 for c in slow)
        return None if total <= 0 else sum(c.cpu_wait_ms or 0.0 for c in slow) / total

    @property
    def waits_s(self) -> list[float]:
        return [c.wait_seconds for c in self.calls if c.connected and c.wait_seconds is not None]

    def talk_by_operator(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.calls:
            if c.operator and c.talk_seconds:
                out[c.operator] = out.get(c.operator, 0.0) + c.talk_seconds
        return out

    def dispositions(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.calls:
            key = c.disposition or "open"
            out[key] = out.get(key, 0) + 1
        return out


async def read_calls(db_url: str, callers: Sequence[str], since: datetime, expect: int,
                     settle_s: float = 20.0) -> RunRecords:
    """The run's calls (by caller E.164 and arrival), waiting up to settle_s for the daemon's
    writer to flush: until `expect` calls are there and all have ended, or the count stops
    moving for 3 s."""
    engine = create_async_engine(db_url, pool_size=1, max_overflow=0,
                                 connect_args=connect_args(QUERY_TIMEOUT))
    try:
        deadline = time.monotonic() + settle_s
        last_count, stable_since = -1, time.monotonic()
        while True:
            async with engine.connect() as conn:
                rows = (await conn.execute(_CALLS, {"callers": list(callers),
                                                    "since": since})).all()
            records = RunRecords([CallRow(*row) for row in rows])
            done = len(rows) >= expect and all(c.ended for c in records.calls)
            if len(rows) != last_count:
                last_count, stable_since = len(rows), time.monotonic()
            now = time.monotonic()
            if done or now > deadline or (rows and now - stable_since > 3
                                          and all(c.ended for c in records.calls)):
                return records
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


@dataclass
class QueueLog:
    """app_queue's queue_log lines of one queue since a time: waits and talk per member."""

    waits_s: list[float] = field(default_factory=list)
    talk_by_member: dict[str, float] = field(default_factory=dict)
    abandoned: int = 0

    @classmethod
    def read(cls, path: Path, queue: str, since_epoch: float) -> QueueLog:
        """Lines "epoch|uniqueid|queue|member|EVENT|data1|data2|...": CONNECT's data1 is the
        hold time; COMPLETECALLER/COMPLETEAGENT's data2 the talk time; ABANDON counts."""
        out = cls()
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            parts = line.split("|")
            if len(parts) < 5 or parts[2] != queue:
                continue
            try:
                if float(parts[0]) < since_epoch:
                    continue
                event = parts[4]
                if event == "CONNECT" and len(parts) > 5:
                    out.waits_s.append(float(parts[5]))
                elif event in ("COMPLETECALLER", "COMPLETEAGENT") and len(parts) > 6:
                    member = parts[3]
                    out.talk_by_member[member] = out.talk_by_member.get(member, 0.0) + float(
                        parts[6])
                elif event == "ABANDON":
                    out.abandoned += 1
            except ValueError:
                continue  # a line of another format (a reload, a member event)
        return out
