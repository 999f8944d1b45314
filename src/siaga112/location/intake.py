"""AML messages in (POST /aml): checked (aml.py), matched to the call they belong to, and put in
that call's record as a ``location`` event; never dropped silently.

A message belongs to the live call from its ``device_number``, or, when there is none, to the
newest call from that number that ended at most ``MATCH_WINDOW`` ago (a handset often sends its
location after a short call). ``RecentCalls`` (an EventSink beside the records writer) knows the
calls of this daemon's life; after a restart the records are asked as well.

A message that is refused (422) or matches no call is kept: appended, with the time, the outcome
and why, to ``<state_dir>/aml/kept.jsonl`` (0640, at most ``MAX_KEPT_BYTES``; past that it is
counted as lost and logged at critical level), remembered in memory for ``GET /aml`` (the last
``RECENT_KEPT``), counted in ``siaga112_aml_messages_total{outcome}`` and logged.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from siaga112.location.aml import AmlError, parse_aml
from siaga112.model import CallEvent, CallEventType, OperatorEvent, utcnow
from siaga112.records.schemas import CallRecord

log = structlog.get_logger(__name__)

MATCH_WINDOW = timedelta(minutes=10)
MAX_KEPT_BYTES = 16 * 1024 * 1024
RECENT_KEPT = 200
MAX_CALLS_KNOWN = 20_000  # numbers RecentCalls remembers at once
KEPT_FILE = "kept.jsonl"

CallsOf = Callable[[str], Awaitable[Sequence[CallRecord]]]  # the records' newest calls of a number


@dataclass
class _Known:
    call_id: str
    ended_at: datetime | None


class RecentCalls:
    """The newest 112 call of each number this daemon saw arrive, and when it ended."""

    def __init__(self, window: timedelta = MATCH_WINDOW) -> None:
        self._window = window
        self._by_number: OrderedDict[str, _Known] = OrderedDict()
        self._number_of: dict[str, str] = {}

    def call_event(self, event: CallEvent) -> None:
        if event.type is CallEventType.ARRIVED:
            number = event.data.get("caller")
            if not number or event.data.get("direction") == "outbound":
                return
            self._by_number[str(number)] = _Known(event.call_id, None)
            self._by_number.move_to_end(str(number))
            self._number_of[event.call_id] = str(number)
            while len(self._by_number) > MAX_CALLS_KNOWN:
                _, old = self._by_number.popitem(last=False)
                self._number_of.pop(old.call_id, None)
        elif event.type is CallEventType.ENDED:
            number = self._number_of.get(event.call_id)
            known = self._by_number.get(number) if number else None
            if known is not None and known.call_id == event.call_id:
                known.ended_at = event.at

    def operator_event(self, event: OperatorEvent) -> None:
        pass

    def match(self, number: str, now: datetime) -> str | None:
        known = self._by_number.get(number)
        if known is None:
            return None
        if known.ended_at is None or now - known.ended_at <= self._window:
            return known.call_id
        return None


@dataclass(frozen=True)
class AmlOutcome:
    outcome: str  # matched | unmatched | invalid
    call_id: str | None = None
    field: str | None = None
    problem: str | None = None


class AmlIntake:
    def __init__(
        self,
        recent: RecentCalls,
        calls_of: CallsOf,
        emit: Callable[[CallEvent], None],
        state_dir: Path,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._recent = recent
        self._calls_of = calls_of
        self._emit = emit
        self._dir = state_dir / "aml"
        self._counter = Counter("aml_messages", "AML messages received, by outcome "
                                "(matched, unmatched, invalid, lost: not kept on disk).",
                                ["outcome"], namespace="siaga112",
                                registry=registry if registry is not None else CollectorRegistry())
        for outcome in ("matched", "unmatched", "invalid", "lost"):
            self._counter.labels(outcome=outcome)
        self.counts: dict[str, int] = {"matched": 0, "unmatched": 0, "invalid": 0, "lost": 0}
        self.kept: deque[dict[str, Any]] = deque(maxlen=RECENT_KEPT)

    async def receive(self, body: bytes, by: str) -> AmlOutcome:
        """Check, match and record one message; what became of it."""
        now = utcnow()
        try:
            msg = parse_aml(body)
        except AmlError as exc:
            await self._keep(now, "invalid", by, body, problem=str(exc))
            log.warning("aml_invalid", field=exc.field, problem=exc.problem[:200], by=by)
            return AmlOutcome("invalid", field=exc.field, problem=exc.problem)
        call_id = await self._match(msg.number, now)
        if call_id is None:
            await self._keep(now, "unmatched", by, body, number=msg.number,
                             problem=f"no live call from {msg.number} and none ended in the "
                                     f"last {int(MATCH_WINDOW.total_seconds() // 60)} minutes")
            log.warning("aml_unmatched", number=msg.number, by=by)
            return AmlOutcome("unmatched")
        self._emit(CallEvent(call_id=call_id, seq=0, type=CallEventType.LOCATION,
                             data={**msg.data(), "received_by": by}))
        self._count("matched")
        log.info("aml_matched", call_id=call_id, accuracy_m=msg.accuracy_m, source=msg.source)
        return AmlOutcome("matched", call_id=call_id)

    async def _match(self, number: str, now: datetime) -> str | None:
        found = self._recent.match(number, now)
        if found is not None:
            return found
        try:
            calls = await self._calls_of(number)
        except Exception as exc:  # the records are away: the message is kept, not matched
            log.warning("aml_match_records_unavailable", error=repr(exc)[:200])
            return None
        for call in calls:
            if call.callback_of is not None:
                continue
            if call.ended_at is None or now - call.ended_at <= MATCH_WINDOW:
                return call.call_id
            return None
        return None

    async def _keep(self, now: datetime, outcome: str, by: str, body: bytes,
                    number: str | None = None, problem: str | None = None) -> None:
        entry = {"at": now.isoformat(), "outcome": outcome, "by": by, "number": number,
                 "problem": (problem or "")[:500],
                 "body": body[:4096].decode("utf-8", errors="replace")}
        self.kept.append(entry)
        self._count(outcome)
        line = (json.dumps(entry, ensure_ascii=True) + "\n").encode()
        try:
            written = await asyncio.to_thread(self._append, line)
        except OSError as exc:
            written = False
            log.critical("aml_keep_failed", error=str(exc), file=str(self._dir / KEPT_FILE))
        if not written:
            self._count("lost")
            log.critical("aml_not_kept_on_disk", outcome=outcome, number=number,
                         entry=entry)

    def _append(self, line: bytes) -> bool:
        self._dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        path = self._dir / KEPT_FILE
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size + len(line) > MAX_KEPT_BYTES:
            return False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return True

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self._counter.labels(outcome=outcome).inc()
