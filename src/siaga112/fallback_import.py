"""Records of calls the daemon never saw: nothing lost.

When the daemon is not there, the dialplan sends 112 calls to Asterisk's own queue and writes
one line per call into the fallback journal ([fallback-record] in dialplan/extensions.conf).
This module reads those lines into the call records, as CallEvents with deterministic ids, so
that a line read twice (a crash between reading and removing) is stored once.

The file is renamed before it is read, so Asterisk starts a new one for the calls that follow.
A line is removed only once the records journal has taken all its events; file I/O runs in a
thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

from siaga112.callerid import normalise
from siaga112.model import CallEvent, CallEventType, Disposition
from siaga112.wav import seconds_of_pcm_wav

log = structlog.get_logger(__name__)

_NS = uuid.UUID("6f1c1d3e-8c11-4f6a-9b0e-112112112112")
_FIELDS = 10
_SEQ_BASE = 10_000  # after any step the daemon itself recorded for a handed-back call


def _at(epoch: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(epoch), UTC) if epoch else None
    except (ValueError, OverflowError, OSError):
        return None


class RecordJournal(Protocol):
    def journal_events(self, events: Sequence[CallEvent]) -> bool:
        """Journal every one of events or none; False: not taken, try again later."""
        ...


@dataclass
class _Line:
    number: int
    text: str
    events: list[CallEvent] | None  # None: not a fallback line


class FallbackImporter:
    """A line leaves the fallback journal only once the records journal has taken every event
    it gives: when the records journal is full or its disk refuses, the line and those after it
    stay (in the ``.importing-`` file) for the next round. File reads and writes happen in a
    thread; events are handed to the journal on the event loop."""

    def __init__(self, journal: Path, sink: RecordJournal, recordings: Path,
                 interval: float = 10.0) -> None:
        self._journal = journal
        self._sink = sink
        self._recordings = recordings
        self._interval = interval
        self.imported = 0
        self.rejected = 0
        self.deferred = 0  # lines left for a later round: the records journal did not take them

    async def import_once(self, chunk: int = 200) -> int:
        """Read every waiting line into records; returns how many calls were imported. After
        an outage there may be thousands: the event loop gets a turn every `chunk` lines, so
        live calls are not held up by the import."""
        pending = await asyncio.to_thread(self._take)
        n = 0
        self.deferred = 0
        for path in pending:
            try:
                lines = await asyncio.to_thread(self._parse_file, path)
            except OSError as exc:
                log.error("fallback_journal_unreadable", path=str(path), error=str(exc))
                continue
            rejected: list[str] = []
            left: list[str] = []
            for i, line in enumerate(lines):
                if i and i % chunk == 0:
                    await asyncio.sleep(0)
                if line.events is None:
                    rejected.append(line.text)
                    log.error("fallback_line_rejected", path=str(path), line=line.number,
                              text=line.text[:200])
                elif not line.events or self._sink.journal_events(line.events):
                    n += 1
                else:
                    left = [x.text for x in lines[i:]]
                    break
            self.rejected += len(rejected)
            try:
                await asyncio.to_thread(self._finish, path, rejected, left)
            except OSError as exc:
                # The whole file is read again next time: its events have the same ids.
                log.error("fallback_journal_not_updated", path=str(path), error=str(exc))
            if left:
                self.deferred = len(left)
                log.warning("fallback_import_paused_records_journal_refused", path=str(path),
                            imported=n, left=len(left))
                break
        if n:
            log.info("fallback_calls_imported", calls=n, left=self.deferred)
        self.imported += n
        return n

    # -- in a thread ----------------------------------------------------------------------------

    def _take(self) -> list[Path]:
        """Files left from earlier rounds, then the live journal renamed (Asterisk starts a new
        one for the calls that follow)."""
        pending = sorted(self._journal.parent.glob(self._journal.name + ".importing-*"))
        if self._journal.exists():
            taken = self._journal.with_name(f"{self._journal.name}.importing-{time.time_ns()}")
            try:
                self._journal.rename(taken)
            except OSError as exc:
                log.error("fallback_journal_unreadable", path=str(self._journal), error=str(exc))
                return pending
            pending.append(taken)
        return pending

    def _parse_file(self, path: Path) -> list[_Line]:
        out: list[_Line] = []
        for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not text.strip():
                continue
            try:
                events = self._events(text)
            except Exception as exc:  # one bad line never stops the import
                log.warning("fallback_line_unparsable", path=str(path), line=number,
                            error=repr(exc)[:200])
                events = None
            out.append(_Line(number, text, events))
        return out

    def _finish(self, path: Path, rejected: list[str], left: list[str]) -> None:
        """Rejected lines to rejected.log, then the file keeps only what is left (or goes)."""
        if rejected:
            with open(path.with_name("rejected.log"), "a") as out:
                out.write("".join(line + "\n" for line in rejected))
                out.flush()
                os.fsync(out.fileno())
        if not left:
            path.unlink()
            return
        tmp = path.with_name(f".{path.name}.tmp")  # not matched as a file to import
        with open(tmp, "w") as fh:
            fh.write("".join(line + "\n" for line in left))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _events(self, line: str) -> list[CallEvent] | None:
        """The events of one fallback line (ids derived from the call id and the step, so a
        line read twice gives the same events); None when it is not a fallback line."""
        fields = line.split("|")
        if len(fields) != _FIELDS:
            return None
        (call_id, t0, t_answer, t_end, line_type, trunk, member, queue_status, stasis_status,
         caller_b64) = fields
        if not call_id:
            return None
        events: list[CallEvent] = []
        try:
            caller_raw = base64.b64decode(caller_b64).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            caller_raw = ""
        caller = normalise(caller_raw)
        daemon_saw_it = stasis_status == "SUCCESS"  # handed back after a fault of ours
        seq = _SEQ_BASE

        def emit(type_: CallEventType, at: datetime | None, **data: object) -> None:
            nonlocal seq
            seq += 1
            event_id = uuid.uuid5(_NS, f"{call_id}/{type_.value}")
            events.append(CallEvent(
                event_id=event_id, call_id=call_id, seq=seq, type=type_,
                at=at or datetime.now(UTC), data={**data, "via": "fallback queue"},
            ))

        if not daemon_saw_it:
            emit(CallEventType.ARRIVED, _at(t0), caller_raw=caller.raw, caller=caller.e164,
                 caller_problem=caller.problem.value, line_type=line_type or "unknown",
                 trunk=trunk, channel_id=call_id)
            emit(CallEventType.ANSWERED, _at(t_answer))
        if member:
            emit(CallEventType.CONNECTED, _at(t_answer), operator=member)
        disposition = Disposition.FALLBACK if member else Disposition.ABANDONED
        emit(CallEventType.ENDED, _at(t_end), disposition=disposition.value,
             hangup_by="caller", cause=f"queue {queue_status or 'unknown'}")
        recording = self._recordings / f"{call_id}.wav"
        if recording.exists():
            seconds = seconds_of_pcm_wav(recording.stat().st_size)
            emit(CallEventType.RECORDING, _at(t_end), path=str(recording),
                 seconds=round(seconds, 2))
        return events

    async def run(self) -> None:
        while True:
            try:
                # Events are handed over in the loop, not in a thread: a task cancelled at
                # shutdown must not go on handing events to a writer that has stopped.
                await self.import_once()
            except Exception:
                log.exception("fallback_import_failed")
            await asyncio.sleep(self._interval)
