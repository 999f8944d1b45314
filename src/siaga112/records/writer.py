"""RecordWriter: the EventSink that puts every call's record into PostgreSQL.

``call_event`` / ``operator_event`` only append a line to the local journal (never block on
the database, never raise); a background task writes batches to PostgreSQL, one transaction
each, and advances the journal after the commit. While PostgreSQL is down it retries every
``retry_interval`` and the journal grows up to ``journal_max_bytes``; past that, events are
dropped, counted and logged at critical level. After a crash the journal is replayed on start;
the store is idempotent by event_id, so nothing is written twice.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import CallEvent, OperatorEvent
from siaga112.records.apply import store
from siaga112.records.journal import Journal, JournalBatch
from siaga112.records.policy import BlockPolicy
from siaga112.settings import DatabaseSettings

log = structlog.get_logger(__name__)

_CALL = b"c"
_OPERATOR = b"o"
REJECTED_FILE = "rejected.jsonl"


def _is_data_fault(exc: BaseException) -> bool:
    """The database refused the data itself (SQLSTATE class 22 or 23): retrying cannot help,
    unlike a lost connection or a missing table."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or ""
        return str(code)[:2] in ("22", "23")
    return False


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {orig if orig is not None else exc}"[:300]


class RecordWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        journal_dir: Path,
        settings: DatabaseSettings,
        policy: BlockPolicy,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._policy = policy
        self._dir = journal_dir
        self._journal = Journal(journal_dir, settings.journal_max_bytes)
        self.dropped = 0  # events lost: journal full or unwritable
        self.rejected = 0  # events the database refused as data (kept in rejected.jsonl)
        self.committed = 0  # events stored since start
        self.failures = 0  # batches that failed for want of the database
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False  # stopped: late events are journalled and the file closed again
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()

    # -- EventSink: the call path ------------------------------------------------------------

    def call_event(self, event: CallEvent) -> None:
        self._append(_CALL, event)

    def operator_event(self, event: OperatorEvent) -> None:
        self._append(_OPERATOR, event)

    @property
    def backlog(self) -> int:
        """Events journalled and not yet committed to PostgreSQL."""
        return self._journal.backlog

    def _append(self, kind: bytes, event: CallEvent | OperatorEvent) -> None:
        try:
            line = b'{"k":"' + kind + b'","e":' + event.model_dump_json().encode() + b"}"
            written = self._journal.append(line)
            if self._closed:
                self._journal.close()  # the next start writes it to PostgreSQL
        except Exception as exc:
            self.dropped += 1
            log.critical(
                "record_dropped_journal_error", event_id=str(event.event_id), error=str(exc)
            )
            return
        if not written:
            self.dropped += 1
            log.critical(
                "record_dropped_journal_full",
                event_id=str(event.event_id),
                journal_bytes=self._journal.bytes_on_disk,
                dropped=self.dropped,
            )
            return
        self._idle.clear()

    # -- background task ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._closed = False
            self._task = asyncio.create_task(self.run(), name="record-writer")
        return self._task

    async def run(self) -> None:
        log.info("record_writer_started", backlog=self.backlog, journal=str(self._dir))
        while True:
            batch = self._journal.read(self._settings.batch_size)
            if batch.lines:
                if not await self._write(batch):
                    if self._stopping:
                        return
                    await self._sleep(self._settings.retry_interval)
                    continue
                if len(batch.lines) >= self._settings.batch_size:
                    continue
            if self.backlog == 0:
                self._idle.set()
            if self._stopping:
                return
            await self._sleep(self._settings.flush_interval)

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the sink API)
        """Write what can be written within timeout, then stop; the rest stays journalled."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.warning("record_writer_stop_timeout", backlog=self.backlog)
        try:
            await asyncio.to_thread(self._journal.sync)
        except OSError as exc:
            log.error("journal_sync_failed", error=str(exc))
        self._journal.close()
        self._closed = True
        log.info("record_writer_stopped", backlog=self.backlog, dropped=self.dropped)

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 (for tests)
        """Wait until every journalled event is committed. False on timeout."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _write(self, batch: JournalBatch) -> bool:
        """Store batch and advance the journal. False when the database is unavailable."""
        calls, ops, bad = self._decode(batch.lines)
        try:
            await store(self._engine, self._policy, calls, ops)
        except Exception as exc:
            if not _is_data_fault(exc):
                self.failures += 1
                log.warning(
                    "records_database_unavailable",
                    error=_short(exc),
                    backlog=self.backlog,
                    retry_in=self._settings.retry_interval,
                )
                return False
            log.error("record_batch_refused_isolating", error=_short(exc), size=len(batch.lines))
            if not await self._write_one_by_one(calls, ops):
                return False
        self._reject(bad)
        self._journal.commit(batch)
        self.committed += len(calls) + len(ops)
        try:
            await asyncio.to_thread(self._journal.sync)
        except OSError as exc:
            log.error("journal_sync_failed", error=str(exc))
        return True

    async def _write_one_by_one(self, calls: list[CallEvent], ops: list[OperatorEvent]) -> bool:
        singles: list[tuple[CallEvent | OperatorEvent, list[CallEvent], list[OperatorEvent]]]
        singles = [(ev, [ev], []) for ev in calls] + [(ev, [], [ev]) for ev in ops]
        for ev, call_evs, op_evs in singles:
            try:
                await store(self._engine, self._policy, call_evs, op_evs)
            except Exception as exc:
                if not _is_data_fault(exc):
                    return False
                log.error("record_refused", event_id=str(ev.event_id), error=_short(exc))
                self._reject([ev.model_dump_json().encode()])
        return True

    def _decode(
        self, lines: list[bytes]
    ) -> tuple[list[CallEvent], list[OperatorEvent], list[bytes]]:
        calls: list[CallEvent] = []
        ops: list[OperatorEvent] = []
        bad: list[bytes] = []
        for line in lines:
            try:
                rec = json.loads(line)
                if rec["k"] == _CALL.decode():
                    calls.append(CallEvent.model_validate(rec["e"]))
                else:
                    ops.append(OperatorEvent.model_validate(rec["e"]))
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                log.error("journal_line_unreadable", error=str(exc), line=line[:200])
                bad.append(line)
        return calls, ops, bad

    def _reject(self, lines: list[bytes]) -> None:
        """Keep what the database cannot take beside the journal, for a person to look at."""
        if not lines:
            return
        self.rejected += len(lines)
        try:
            with open(self._dir / REJECTED_FILE, "ab") as fh:
                fh.write(b"".join(line + b"\n" for line in lines))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            log.critical("rejected_records_lost", count=len(lines), error=str(exc))
