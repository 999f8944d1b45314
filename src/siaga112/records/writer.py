"""RecordWriter: the EventSink that puts every call's record into PostgreSQL.

``call_event`` / ``operator_event`` only append a line to the local journal (never block on
the database, never raise); a background task writes batches to PostgreSQL, one transaction
each, and advances the journal after the commit. After a crash the journal is replayed on
start; the store is idempotent by event_id, so nothing is written twice.

Cadence: a batch is stored every ``store_interval``, at once when ``batch_size`` records wait;
in between, what was journalled is fsynced every ``flush_interval``, so a power cut takes at
most that much whether the database has it yet or not. A reader that needs the records of the
last second (an operator marks the call that just ended) calls ``flush()`` first.

What the database cannot take does not stop the writer. Each failure is classified
(``classify``): a lost connection, a timeout or a server going down means the database is away,
and the batch is retried every ``retry_interval`` while the journal grows up to
``journal_max_bytes`` (past that, events are dropped, counted and logged at critical level).
While it is away, what was appended is fsynced every ``flush_interval`` (one fsync per group
of appends, in a thread), so a power cut loses at most that much. A refusal of the data itself
(any other SQLSTATE class: 22, 23, 42, 54, ...) sets the batch's records one by one; those
refused, lines that cannot be read (torn by a crash or a full disk, corrupt), and records that
failed ``quarantine_after`` times go to a quarantine file outside the journal
(``<state_dir>/quarantine/records.jsonl``), each with its reason, and the writer moves on.

``problems`` names what puts records at risk now (journal full or unwritable, quarantine
unwritable, fsync failed, journal unreadable); /ready says "degraded" and /metrics counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import CallEvent, OperatorEvent, event_json
from siaga112.records import quarantine
from siaga112.records.apply import store
from siaga112.records.faults import Fault, classify, short
from siaga112.records.journal import Journal, JournalBatch
from siaga112.records.policy import BlockPolicy
from siaga112.settings import DatabaseSettings

log = structlog.get_logger(__name__)

_CALL = b"c"
_OPERATOR = b"o"

# Problems (``RecordWriter.problems``): each means records are at risk until it clears.
JOURNAL_FULL = "journal_full"
JOURNAL_UNWRITABLE = "journal_unwritable"
JOURNAL_UNREADABLE = "journal_unreadable"
JOURNAL_SYNC_FAILED = "journal_sync_failed"
QUARANTINE_UNWRITABLE = "quarantine_unwritable"

Item = tuple[bytes, CallEvent | OperatorEvent]  # the journal line and its event


def _head(kind: bytes) -> bytes:
    """A journal line up to its event's JSON: {"k":"<kind>","e":<event>}."""
    return b'{"k":"' + kind + b'","e":'


_CALL_HEAD = _head(_CALL)
# Lines decoded between two turns of the loop: a full batch decoded in one go held up the
# take-in of calls arriving meanwhile by milliseconds at 180 calls/s (docs/load-testing.md,
# twenty-second round).
DECODE_SLICE = 50


class RecordWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        journal_dir: Path,
        settings: DatabaseSettings,
        policy: BlockPolicy,
        quarantine_dir: Path | None = None,
        segment_bytes: int | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._policy = policy
        self._dir = journal_dir
        self._quarantine_dir = quarantine_dir or journal_dir.parent / "quarantine"
        if self._quarantine_dir.resolve().is_relative_to(journal_dir.resolve()):
            raise ValueError(f"the quarantine ({self._quarantine_dir}) must be outside the "
                             f"journal ({journal_dir})")
        quarantine.move_legacy_rejected(journal_dir, self._quarantine_dir)
        self._journal = Journal(journal_dir, settings.journal_max_bytes, segment_bytes)
        self.dropped = 0  # events lost: journal full or unwritable
        self.quarantined = 0  # lines set aside in the quarantine file
        self.committed = 0  # events stored since start
        self.failures = 0  # batches that failed for want of the database
        self.syncs = 0  # journal fsyncs (between stores, and while the database is away)
        self._attempts = 0  # failures in a row of the batch at the head, not for want of the db
        self._database_away = False
        self._problems: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False  # stopped: late events are journalled and the file closed again
        self._wake = asyncio.Event()
        self._asked = False  # a reader wants the journal stored now (flush, stop, wait_idle)
        self._dozing = False  # everything stored: asleep until something is journalled
        self._idle = asyncio.Event()
        self._reads = 0  # journal reads begun
        self._drained = 0  # the last read after which everything it found was stored
        self._progress = asyncio.Condition()

    @property
    def quarantine_file(self) -> Path:
        return self._quarantine_dir / quarantine.QUARANTINE_FILE

    @property
    def backlog(self) -> int:
        """Events journalled and not yet committed to PostgreSQL."""
        return self._journal.backlog

    @property
    def journal_bytes(self) -> int:
        return self._journal.bytes_on_disk

    @property
    def problems(self) -> list[str]:
        """What puts records at risk now; empty when every record is kept."""
        return sorted(self._problems)

    # -- EventSink: the call path ------------------------------------------------------------

    def call_event(self, event: CallEvent) -> None:
        self._append(_CALL, event)

    def operator_event(self, event: OperatorEvent) -> None:
        self._append(_OPERATOR, event)

    def journal_events(self, events: Sequence[CallEvent]) -> bool:
        """Journal every one of events or none (the fallback importer keeps its line for a
        later try when this says False; nothing is counted as dropped)."""
        lines = [self._line(_CALL, ev) for ev in events]
        try:
            written = self._journal.append_many(lines)
        except OSError as exc:
            self._problem(JOURNAL_UNWRITABLE, str(exc))
            return False
        finally:
            self._close_if_stopped()
        if not written:
            self._problem(JOURNAL_FULL, f"{self._journal.bytes_on_disk} bytes")
            return False
        self._journal_took()
        return True

    @staticmethod
    def _line(kind: bytes, event: CallEvent | OperatorEvent) -> bytes:
        return _head(kind) + event_json(event) + b"}"

    def _append(self, kind: bytes, event: CallEvent | OperatorEvent) -> None:
        try:
            written = self._journal.append(self._line(kind, event))
        except Exception as exc:
            self.dropped += 1
            self._problem(JOURNAL_UNWRITABLE, str(exc))
            log.critical("record_dropped_journal_error", event_id=str(event.event_id),
                         error=str(exc), dropped=self.dropped)
            return
        finally:
            self._close_if_stopped()
        if not written:
            self.dropped += 1
            self._problem(JOURNAL_FULL, f"{self._journal.bytes_on_disk} bytes")
            log.critical(
                "record_dropped_journal_full",
                event_id=str(event.event_id),
                journal_bytes=self._journal.bytes_on_disk,
                dropped=self.dropped,
            )
            return
        self._journal_took()

    def _journal_took(self) -> None:
        self._clear(JOURNAL_FULL)
        self._clear(JOURNAL_UNWRITABLE)
        self._idle.clear()
        if self._dozing:  # not a reader's ask: the usual cadence decides when it is stored
            self._dozing = False
            self._wake.set()

    def _close_if_stopped(self) -> None:
        if self._closed:
            self._journal.close()  # the next start writes it to PostgreSQL

    # -- problems ------------------------------------------------------------------------------

    def _problem(self, name: str, detail: str) -> None:
        if name not in self._problems:
            log.critical("records_degraded", problem=name, detail=detail[:300])
        self._problems[name] = detail

    def _clear(self, name: str) -> None:
        if self._problems.pop(name, None) is not None:
            log.info("records_problem_cleared", problem=name)

    # -- background task ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._closed = False
            self._task = asyncio.create_task(self.run(), name="record-writer")
        return self._task

    async def run(self) -> None:
        log.info("record_writer_started", backlog=self.backlog, journal=str(self._dir),
                 quarantine=str(self._quarantine_dir))
        loop = asyncio.get_running_loop()
        settings = self._settings
        stored_at = loop.time()
        urgent = True  # the replay of what an earlier run left goes at once
        while True:
            if not (urgent or self._stopping or self.backlog >= settings.batch_size
                    or loop.time() - stored_at >= settings.store_interval):
                if self.backlog:  # not in PostgreSQL yet: on the disk, for a power cut
                    await self._sync_journal()
                urgent = await self._sleep(settings.flush_interval)
                continue
            stored_at = loop.time()
            self._wake.clear()  # this read answers every wake so far (flush, wait_idle)
            self._asked = False
            self._reads += 1
            read = self._reads
            try:
                batch = self._journal.read(settings.batch_size)
                self._clear(JOURNAL_UNREADABLE)
            except OSError as exc:
                self._problem(JOURNAL_UNREADABLE, str(exc))
                batch = None
            if batch is not None and (batch.lines or batch.torn):
                try:
                    written = await self._write(batch)
                except Exception:  # a fault of ours must not stop the records for good
                    log.exception("record_batch_failed", size=len(batch.lines))
                    written = False
                if written:
                    if len(batch.lines) >= settings.batch_size:
                        urgent = True  # more may wait behind a full batch
                        continue
                else:
                    batch = None
            if batch is None:  # not written: keep the journal safe, try again later
                if self._stopping:
                    return
                await self._wait_out(settings.retry_interval)
                urgent = True
                continue
            await self._stored_to_end(read)
            if self.backlog == 0:
                self._idle.set()
            if self._stopping:
                return
            if self.backlog == 0:
                # Everything is stored: no tick until something is journalled (an idle
                # daemon woke five times a second for an empty read).
                self._dozing = True
                urgent = await self._sleep(None)
                self._dozing = False
            else:
                urgent = await self._sleep(settings.flush_interval)

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 (a bound for a reader)
        """Store what was journalled before this call, now. False when that did not happen
        within timeout (the database is away or slow: the records are still journalled)."""
        after = self._reads  # a read already begun may have missed the newest lines
        self._ask()
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: self._drained > after)
        except TimeoutError:
            return False
        return True

    async def _stored_to_end(self, read: int) -> None:
        async with self._progress:
            self._drained = read
            self._progress.notify_all()

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the sink API)
        """Write what can be written within timeout, then stop; the rest stays journalled."""
        self._stopping = True
        self._ask()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.warning("record_writer_stop_timeout", backlog=self.backlog)
        await self._sync_journal()
        self._journal.close()
        self._closed = True
        log.info("record_writer_stopped", backlog=self.backlog, dropped=self.dropped,
                 quarantined=self.quarantined)

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 (for tests)
        """Wait until every journalled event is committed. False on timeout."""
        self._ask()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _ask(self) -> None:
        self._asked = True
        self._wake.set()

    async def _sleep(self, seconds: float | None) -> bool:
        """Sleep up to seconds (None: until woken); True when a reader asked for the journal
        to be stored (flush, stop, wait_idle), False after the time or a line journalled."""
        # A timeout on this task, not wait_for's task around the wait: this runs every
        # flush_interval while records wait, and each wait_for made a task and its callbacks.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        asked, self._asked = self._asked, False
        self._wake.clear()
        return asked

    async def _wait_out(self, seconds: float) -> None:
        """The database is away (or the batch could not be finished): wait before the next
        try, fsyncing what the call path appends every flush_interval meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            await self._sync_journal()
            left = deadline - loop.time()
            if left <= 0 or self._stopping:
                return
            if await self._sleep(min(self._settings.flush_interval, left)):
                return

    async def _sync_journal(self) -> None:
        if not self._journal.unsynced:
            return
        try:
            await asyncio.to_thread(self._journal.sync)
        except OSError as exc:
            self._problem(JOURNAL_SYNC_FAILED, str(exc))
            return
        self.syncs += 1
        self._clear(JOURNAL_SYNC_FAILED)

    # -- one batch ---------------------------------------------------------------------------

    async def _write(self, batch: JournalBatch) -> bool:
        """Store batch, quarantine what cannot be stored, advance the journal. False when the
        batch must be tried again (database away, a fault that may pass, quarantine
        unwritable)."""
        items: list[Item] = []
        bad: list[tuple[bytes, str]] = []
        for start in range(0, len(batch.lines), DECODE_SLICE):
            if start:
                await asyncio.sleep(0)  # a call arriving meanwhile is taken in first
            more, worse = self._decode(batch.lines[start:start + DECODE_SLICE])
            items += more
            bad += worse
        bad += [(raw, "torn line: no newline at the end of a closed segment (a crash or a "
                      "full disk cut it)") for raw in batch.torn]
        refused: list[tuple[bytes, str]] = []
        if items:
            fault, exc = await self._store(items)
            if fault is Fault.DOWN:
                self._database_is_away(exc)
                return False
            if fault is Fault.TRANSIENT:
                self._attempts += 1
                if self._attempts < self._settings.quarantine_after:
                    log.warning("record_batch_failed_will_retry", error=short(exc),
                                attempt=self._attempts, size=len(items))
                    return False
            if fault is not None:
                log.error("record_batch_refused_isolating", error=short(exc), fault=fault.value,
                          size=len(items), attempt=self._attempts)
                isolated = await self._isolate(items)
                if isolated is None:
                    return False
                refused = isolated
        if not await self._quarantine(bad + refused):
            return False
        self._journal.commit(batch)
        self._attempts = 0
        self.committed += len(items) - len(refused)
        if self._database_away:
            self._database_away = False
            log.info("records_database_back", backlog=self.backlog)
        return True

    async def _store(self, items: Sequence[Item]) -> tuple[Fault | None, BaseException | None]:
        calls = [ev for _, ev in items if isinstance(ev, CallEvent)]
        ops = [ev for _, ev in items if isinstance(ev, OperatorEvent)]
        try:
            await store(self._engine, self._policy, calls, ops)
        except Exception as exc:
            return classify(exc), exc
        return None, None

    def _database_is_away(self, exc: BaseException | None) -> None:
        self.failures += 1
        self._database_away = True
        log.warning(
            "records_database_unavailable",
            error=short(exc),
            backlog=self.backlog,
            retry_in=self._settings.retry_interval,
        )

    async def _isolate(self, items: Sequence[Item]) -> list[tuple[bytes, str]] | None:
        """Each record alone: the refused ones with their reasons, None when the database
        went away meanwhile (then the batch is tried again; what was stored is stored once)."""
        refused: list[tuple[bytes, str]] = []
        for line, ev in items:
            fault, exc = await self._store([(line, ev)])
            if fault is Fault.DOWN:
                self._database_is_away(exc)
                return None
            if fault is not None:
                why = "refused by the database" if fault is Fault.PERMANENT else (
                    f"failed {self._settings.quarantine_after} times")
                refused.append((line, f"{why}: {short(exc)}"))
        return refused

    def _decode(self, lines: list[bytes]) -> tuple[list[Item], list[tuple[bytes, str]]]:
        items: list[Item] = []
        bad: list[tuple[bytes, str]] = []
        for line in lines:
            # The lines this writer appended (_line): the event's JSON validated as it stands,
            # without building a dict of the whole line first (half the decoding's cost).
            if line.startswith(_CALL_HEAD) and line.endswith(b"}"):
                try:
                    items.append((line, CallEvent.model_validate_json(line[len(_CALL_HEAD):-1])))
                    continue
                except ValidationError:
                    pass  # read again below, where what is wrong is said
            try:
                rec = json.loads(line)
                kind = rec["k"]
                if kind == _CALL.decode():
                    items.append((line, CallEvent.model_validate(rec["e"])))
                elif kind == _OPERATOR.decode():
                    items.append((line, OperatorEvent.model_validate(rec["e"])))
                else:
                    bad.append((line, f"unreadable: unknown kind {str(kind)[:20]!r}"))
            except ValidationError as exc:
                bad.append((line, f"unreadable: {exc.error_count()} invalid fields: "
                                  f"{str(exc)[:200]}"))
            except (ValueError, KeyError, TypeError) as exc:
                bad.append((line, f"unreadable: {type(exc).__name__}: {str(exc)[:200]}"))
        return items, bad

    async def _quarantine(self, bad: list[tuple[bytes, str]]) -> bool:
        """Keep what cannot be stored outside the journal, with its reason, for a person.
        False when the quarantine cannot be written (then nothing moves on)."""
        if not bad:
            return True
        try:
            await asyncio.to_thread(quarantine.append, self._quarantine_dir,
                                    quarantine.entries(bad, self._dir))
        except OSError as exc:
            self._problem(QUARANTINE_UNWRITABLE, str(exc))
            log.error("record_quarantine_unwritable", count=len(bad), error=str(exc),
                      file=str(self.quarantine_file))
            return False
        self._clear(QUARANTINE_UNWRITABLE)
        self.quarantined += len(bad)
        for line, reason in bad:
            log.error("record_quarantined", reason=reason, line=line[:200],
                      file=str(self.quarantine_file), quarantined=self.quarantined)
        return True
