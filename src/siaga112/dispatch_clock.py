"""The 15-minute promise: a clock from the report to "team moving" for every dispatch.

Every few seconds it asks the records for dispatches past their deadline that have not been
reported yet, and emits an OVERDUE event for each (logged, stored, published on MQTT). The same
for complaints past 3x24 hours. It reads the database, so it fails quietly while PostgreSQL is
down and catches up when it is back.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from siaga112.model import CallEvent, CallEventType, utcnow
from siaga112.records.repository import Repository
from siaga112.settings import AgencySettings
from siaga112.sinks import EventSink

log = structlog.get_logger(__name__)


class DispatchClock:
    def __init__(self, repository: Repository, sink: EventSink, settings: AgencySettings) -> None:
        self._repo = repository
        self._sink = sink
        self._settings = settings
        self._reported: set[str] = set()

    async def check(self) -> int:
        deadline = utcnow() - timedelta(minutes=self._settings.moving_deadline_minutes)
        overdue = await self._repo.overdue_dispatches(deadline)
        n = 0
        for d in overdue:
            if d.dispatch_id in self._reported:
                continue
            self._reported.add(d.dispatch_id)
            log.warning("dispatch_overdue", call_id=d.call_id, agency=d.agency,
                        dispatch_id=d.dispatch_id, requested_at=d.requested_at.isoformat())
            self._sink.call_event(
                CallEvent(call_id=d.call_id, seq=0, type=CallEventType.OVERDUE,
                          data={"agency": d.agency, "dispatch_id": d.dispatch_id,
                                "kind": "moving",
                                "deadline_minutes": self._settings.moving_deadline_minutes})
            )
            n += 1
        return n

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:  # the database may be down: try again next round
                log.info("dispatch_clock_skipped", error=str(exc)[:200])
            await asyncio.sleep(self._settings.overdue_check_interval)
