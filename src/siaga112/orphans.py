"""Records of calls that ended while the daemon was away (killed, or disconnected from ARI).

After a (re)connect's resync, a call that has an arrival but no end in the records and is not
live in Asterisk any more ended while nobody watched: it gets its ENDED event now, marked as
such, so that every call's record is complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from datetime import timedelta

import structlog

from siaga112.model import CallEvent, CallEventType, Disposition, utcnow
from siaga112.records.repository import Repository
from siaga112.records.writer import RecordWriter
from siaga112.sinks import EventSink

log = structlog.get_logger(__name__)


class OrphanCloser:
    def __init__(self, repository: Repository, writer: RecordWriter, sink: EventSink,
                 live: Callable[[], Collection[str]]) -> None:
        self._repo = repository
        self._writer = writer
        self._sink = sink
        self._live = live

    async def close_orphans(self, grace: float = 5.0) -> int:
        # What is still in the journal is not in the database yet: wait for it first.
        if not await self._writer.wait_idle(30):
            log.warning("orphans_skipped", reason="records backlog not written yet")
            return 0
        older_than = utcnow() - timedelta(seconds=grace)
        live = set(self._live())
        n = 0
        for call_id in await self._repo.open_calls(older_than):
            if call_id in live:
                continue
            self._sink.call_event(CallEvent(
                call_id=call_id, seq=100_000, type=CallEventType.ENDED,
                data={"disposition": Disposition.ABANDONED.value, "hangup_by": "unknown",
                      "cause": "ended while the daemon was down"},
            ))
            n += 1
        if n:
            log.warning("orphan_calls_closed", calls=n)
        return n

    async def after_resync(self, resynced: asyncio.Event) -> None:
        """Run once after each resync (a resync follows every reconnect)."""
        while True:
            await resynced.wait()
            try:
                await self.close_orphans()
            except Exception as exc:  # the database may be down: next resync tries again
                log.info("orphans_not_checked", error=str(exc)[:200])
            # The next resync clears the event; an asyncio.Event cannot be awaited for that.
            while resynced.is_set():  # noqa: ASYNC110
                await asyncio.sleep(1.0)
