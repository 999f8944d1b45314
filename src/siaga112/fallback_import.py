"""Records of calls the daemon never saw: nothing lost.

When the daemon is not there, the dialplan sends 112 calls to Asterisk's own queue and writes
one line per call into the fallback journal ([fallback-record] in dialplan/extensions.conf).
This module reads those lines into the call records, as CallEvents with deterministic ids, so
that a line read twice (a crash between reading and removing) is stored once.

The file is renamed before it is read, so Asterisk starts a new one for the calls that follow.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import structlog

from siaga112.callerid import normalise
from siaga112.model import CallEvent, CallEventType, Disposition
from siaga112.sinks import EventSink

log = structlog.get_logger(__name__)

_NS = uuid.UUID("6f1c1d3e-8c11-4f6a-9b0e-112112112112")
_FIELDS = 10
_SEQ_BASE = 10_000  # after any step the daemon itself recorded for a handed-back call


def _at(epoch: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(epoch), UTC) if epoch else None
    except ValueError:
        return None


class FallbackImporter:
    def __init__(self, journal: Path, sink: EventSink, recordings: Path,
                 interval: float = 10.0) -> None:
        self._journal = journal
        self._sink = sink
        self._recordings = recordings
        self._interval = interval
        self.imported = 0
        self.rejected = 0

    async def import_once(self, chunk: int = 200) -> int:
        """Read every waiting line into records; returns how many calls were imported. After
        an outage there may be thousands: the event loop gets a turn every `chunk` lines, so
        live calls are not held up by the import."""
        pending = sorted(self._journal.parent.glob(self._journal.name + ".importing-*"))
        if self._journal.exists():
            taken = self._journal.with_name(f"{self._journal.name}.importing-{time.time_ns()}")
            try:
                self._journal.rename(taken)
            except OSError as exc:
                log.error("fallback_journal_unreadable", path=str(self._journal), error=str(exc))
                return 0
            pending.append(taken)
        n = 0
        for path in pending:
            for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if lineno % chunk == 0:
                    await asyncio.sleep(0)
                if not line.strip():
                    continue
                if self._import_line(line):
                    n += 1
                else:
                    self.rejected += 1
                    log.error("fallback_line_rejected", path=str(path), line=lineno,
                              text=line[:200])
                    with open(path.with_name("rejected.log"), "a") as out:  # noqa: ASYNC230
                        out.write(line + "\n")
            path.unlink()
        if n:
            log.info("fallback_calls_imported", calls=n)
        self.imported += n
        return n

    def _import_line(self, line: str) -> bool:
        fields = line.split("|")
        if len(fields) != _FIELDS:
            return False
        (call_id, t0, t_answer, t_end, line_type, trunk, member, queue_status, stasis_status,
         caller_b64) = fields
        if not call_id:
            return False
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
            self._sink.call_event(CallEvent(
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
            seconds = max(0.0, (recording.stat().st_size - 44) / 16000)
            emit(CallEventType.RECORDING, _at(t_end), path=str(recording),
                 seconds=round(seconds, 2))
        return True

    async def run(self) -> None:
        while True:
            try:
                # In the loop, not in a thread: a task cancelled at shutdown must not go on
                # handing events to a writer that has stopped.
                await self.import_once()
            except Exception:
                log.exception("fallback_import_failed")
            await asyncio.sleep(self._interval)
