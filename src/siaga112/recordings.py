"""Recording retention: every call is recorded by the PBX's MixMonitor (dialplan [emergency])
into `recording.dir` as <call id>.wav; files older than `recording.retention_days` are deleted,
once an hour. The call's record keeps the path and length of what was recorded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class RetentionSweeper:
    def __init__(self, directory: Path, retention_days: int, interval: float = 3600.0) -> None:
        self._dir = directory
        self._max_age = retention_days * 86400.0
        self.interval = interval

    def sweep(self, now: float | None = None) -> int:
        """Delete recordings past retention; returns how many went."""
        now = time.time() if now is None else now
        gone = 0
        try:
            files = list(self._dir.glob("*.wav"))
        except OSError as exc:
            log.warning("recordings_unreadable", dir=str(self._dir), error=str(exc))
            return 0
        for path in files:
            try:
                if now - path.stat().st_mtime > self._max_age:
                    path.unlink()
                    gone += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("recording_not_deleted", path=str(path), error=str(exc))
        if gone:
            log.info("recordings_expired", deleted=gone, retention_days=self._max_age / 86400)
        return gone

    async def sweep_off_loop(self) -> int:
        """The sweep in a worker thread: listing and deleting files never blocks calls."""
        return await asyncio.to_thread(self.sweep)
