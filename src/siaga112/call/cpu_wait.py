"""How long the event loop's thread has waited for a CPU, from the kernel's own count
(/proc/thread-self/schedstat, Linux: nanoseconds on a CPU, nanoseconds runnable on a run queue,
time slices).

A call's take-in (StasisStart routed -> its session's arrival step) is the daemon's own work
queued ahead of it plus the time the daemon was ready to run and no core was free. On a PBX
host whose cores Asterisk keeps busy, the second is most of a slow take-in (docs/load-testing.md,
tenth round); the arrival step records it beside the take-in so that a slow take-in says which
it was."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

SCHEDSTAT = "/proc/thread-self/schedstat"
# An event age beyond this (either way) says the clocks disagree, not how late the event came.
MAX_EVENT_AGE_MS = 60_000.0


class CpuWait:
    """The run-queue wait of the thread that first asks (the event loop's). Reads nothing
    where the file is missing or unreadable: waited() is None then."""

    def __init__(self, path: str = SCHEDSTAT) -> None:
        self._path = path
        self._fd: int | None = None
        self._broken = False

    def waited(self) -> int | None:
        """Nanoseconds this thread has waited for a CPU so far (a counter: subtract two)."""
        if self._broken:
            return None
        try:
            if self._fd is None:  # opened by the first caller: /proc/thread-self is its thread
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            fields = os.pread(self._fd, 128, 0).split()
            return int(fields[1])
        except (OSError, ValueError, IndexError):
            self._broken = True  # asked twice a call; a failing read is not tried again
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            return None


@dataclass(frozen=True)
class Routed:
    """A citizen's StasisStart as the daemon routed it: when (monotonic), the loop thread's
    CPU wait so far, and how old the event was by Asterisk's own timestamp (its stasis queue,
    the socket and our read; None without a timestamp or with one beyond reason, a clock
    stepped or a value made up)."""

    at: float
    cpu_waited: int | None
    event_age_ms: float | None

    @classmethod
    def now(cls, cpu: CpuWait, event_time: datetime | None) -> Routed:
        age = None
        if event_time is not None and event_time.tzinfo is not None:
            ms = (datetime.now(UTC) - event_time).total_seconds() * 1000
            if -MAX_EVENT_AGE_MS < ms < MAX_EVENT_AGE_MS:
                age = round(ms, 1)
        at = time.monotonic()  # before the CPU wait is read: see Arrival.arrive
        return cls(at, cpu.waited(), age)
