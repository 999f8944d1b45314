"""The quarantine: records that cannot be stored (refused by the database, unreadable, failed
too often) kept outside the journal, one JSON line each with its reason, for a person to read.
Blocking file work: the writer calls it in a worker thread."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

QUARANTINE_FILE = "records.jsonl"
LEGACY_REJECTED_FILE = "rejected.jsonl"  # what older versions left inside the journal


def entries(bad: list[tuple[bytes, str]], journal_dir: Path) -> bytes:
    """The quarantine lines for (journal line, reason) pairs."""
    now = datetime.now(UTC).isoformat()
    out: list[bytes] = []
    for line, reason in bad:
        entry: dict[str, str] = {"at": now, "reason": reason, "journal": str(journal_dir)}
        try:
            entry["line"] = line.decode()
        except UnicodeDecodeError:
            entry["line_b64"] = base64.b64encode(line).decode()
        out.append(json.dumps(entry).encode() + b"\n")
    return b"".join(out)


def append(quarantine_dir: Path, data: bytes) -> None:
    """Append whole entries and fsync; on a failure no half entry is left behind."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(quarantine_dir / QUARANTINE_FILE,
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def move_legacy_rejected(journal_dir: Path, quarantine_dir: Path) -> None:
    """Older versions kept refused records in the journal directory: move them out."""
    old = journal_dir / LEGACY_REJECTED_FILE
    if not old.is_file():
        return
    new = quarantine_dir / f"rejected-{time.time_ns()}.jsonl"
    try:
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(old, new)
    except OSError as exc:
        log.error("legacy_rejected_not_moved", path=str(old), error=str(exc))
        return
    log.warning("legacy_rejected_moved_to_quarantine", path=str(new))
