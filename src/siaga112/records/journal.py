"""A bounded, crash-safe local journal: records wait here until PostgreSQL has them.

Lines are appended to numbered segment files (``0000000001.jsonl`` ...) and flushed to the
OS at once, so a killed process loses nothing; ``sync()`` fsyncs for power loss. A
``committed`` file holds the position up to which the database has every line; it only moves
after a database commit, and segments wholly before it are deleted. On open, everything after
it is pending again (replay): the consumer must be idempotent.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

log = structlog.get_logger(__name__)

_SUFFIX = ".jsonl"
_COMMITTED = "committed"


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class JournalBatch:
    lines: list[bytes]
    end: Position  # commit this to mark every line of the batch as stored


class Journal:
    """Appends from the call path (any thread), reads and commits from one consumer task."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int | None = None) -> None:
        self._dir = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes or min(16 << 20, max(64 << 10, max_bytes // 16))
        self._lock = threading.Lock()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._committed = self._read_committed()
        self._sizes: dict[int, int] = {}  # live segment -> bytes on disk
        for path in sorted(self._dir.glob(f"*{_SUFFIX}")):
            seg = int(path.stem)
            if seg < self._committed.segment:
                path.unlink()
            else:
                self._sizes[seg] = path.stat().st_size
        self._bytes = sum(self._sizes.values())
        # Never append to a segment from before the restart: its tail may be torn.
        self._write_seg = max([*self._sizes, self._committed.segment]) + 1
        self._write: BinaryIO | None = None
        self.backlog = self._count_pending()
        if self.backlog:
            log.info("journal_replay", pending=self.backlog, directory=str(self._dir))

    @property
    def bytes_on_disk(self) -> int:
        return self._bytes

    def append(self, line: bytes) -> bool:
        """Append one record (no newline in it). False when the bound is reached (not written).
        Raises OSError when the disk refuses."""
        data = line + b"\n"
        with self._lock:
            if self._bytes + len(data) > self._max_bytes:
                return False
            if self._write is None or self._sizes.get(self._write_seg, 0) >= self._segment_bytes:
                self._rotate()
            assert self._write is not None
            self._write.write(data)
            self._write.flush()
            self._sizes[self._write_seg] += len(data)
            self._bytes += len(data)
            self.backlog += 1
        return True

    def read(self, limit: int) -> JournalBatch:
        """Up to limit complete lines after the committed position (the same ones again until
        committed)."""
        lines: list[bytes] = []
        pos = self._committed
        with self._lock:
            segments = sorted(s for s in self._sizes if s >= pos.segment)
            writing = self._write_seg
        for seg in segments:
            if len(lines) >= limit:
                break
            offset = pos.offset if seg == pos.segment else 0
            with open(self._path(seg), "rb") as fh:
                fh.seek(offset)
                while len(lines) < limit:
                    raw = fh.readline()
                    if not raw.endswith(b"\n"):
                        if raw and seg != writing:
                            log.error("journal_torn_line_skipped", segment=seg, offset=offset)
                            offset += len(raw)
                        break
                    offset += len(raw)
                    if raw.strip():
                        lines.append(raw[:-1])
            pos = Position(seg, offset)
        return JournalBatch(lines, pos)

    def commit(self, batch: JournalBatch) -> None:
        """The database has every line of batch: advance, delete what is wholly behind."""
        end = batch.end
        with self._lock:
            self.backlog = max(0, self.backlog - len(batch.lines))
            for seg in [s for s in self._sizes if s < end.segment]:
                self._drop_segment(seg)
            if end.segment in self._sizes and end.offset >= self._sizes[end.segment]:
                self._drop_segment(end.segment)
                end = Position(end.segment + 1, 0)
            self._committed = end
            self._write_committed(end)

    def sync(self) -> None:
        with self._lock:
            if self._write is not None:
                os.fsync(self._write.fileno())

    def close(self) -> None:
        with self._lock:
            if self._write is not None:
                self._write.close()
                self._write = None

    def _rotate(self) -> None:
        if self._write is not None:
            self._write.close()
            self._write_seg += 1
        self._write = open(self._path(self._write_seg), "ab")  # noqa: SIM115 (kept open)
        self._sizes.setdefault(self._write_seg, 0)

    def _drop_segment(self, seg: int) -> None:
        if seg == self._write_seg and self._write is not None:
            self._write.close()
            self._write = None
            self._write_seg += 1
        self._path(seg).unlink(missing_ok=True)
        self._bytes -= self._sizes.pop(seg)

    def _path(self, seg: int) -> Path:
        return self._dir / f"{seg:010d}{_SUFFIX}"

    def _read_committed(self) -> Position:
        try:
            seg, off = (self._dir / _COMMITTED).read_text().split()
            return Position(int(seg), int(off))
        except FileNotFoundError:
            return Position(0, 0)
        except (OSError, ValueError):
            log.error("journal_committed_unreadable_replaying_all", directory=str(self._dir))
            return Position(0, 0)

    def _write_committed(self, pos: Position) -> None:
        tmp = self._dir / f"{_COMMITTED}.tmp"
        tmp.write_text(f"{pos.segment} {pos.offset}\n")
        os.replace(tmp, self._dir / _COMMITTED)

    def _count_pending(self) -> int:
        count = 0
        for seg in sorted(self._sizes):
            with open(self._path(seg), "rb") as fh:
                if seg == self._committed.segment:
                    fh.seek(self._committed.offset)
                count += fh.read().count(b"\n")
        return count
