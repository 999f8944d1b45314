"""The 15-minute promise: a clock from the report to "team moving" for every dispatch.

Every few seconds it asks the records for dispatches past their deadline that have not been
reported yet, and emits an OVERDUE event for each (logged, stored, published on MQTT); the
stored event sets the dispatch's overdue_at, so it is reported once. The same for complaints
unanswered past ``complaint_deadline_hours`` (3x24 hours): logged, marked overdue in the
database, and an OVERDUE event on the call when the complaint names one. It reads the
database, so it fails quietly while PostgreSQL is down and catches up when it is back.
"""

from __future__ import annotations

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
        # Reported, and the OVERDUE event not yet stored (the writer is asynchronous).
        self._reported: set[str] = set()

    async def check(self) -> int:
        """One round: report what is newly overdue. Returns how many were reported."""
        return await self._check_dispatches() + await self._check_complaints()

    async def _check_dispatches(self) -> int:
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
        # Once stored, the database stops returning a dispatch: forget it here too.
        self._reported &= {d.dispatch_id for d in overdue}
        return n

    async def _check_complaints(self) -> int:
        hours = self._settings.complaint_deadline_hours
        overdue = await self._repo.overdue_complaints(utcnow() - timedelta(hours=hours))
        n = 0
        for c in overdue:
            # Marked first, reported only by whoever marked it: once, also with two clocks.
            if not await self._repo.mark_complaint_overdue(c.id):
                continue
            log.warning("complaint_overdue", complaint_id=c.id, call_id=c.call_id,
                        caller=c.caller, filed_at=c.filed_at.isoformat(), deadline_hours=hours)
            if c.call_id is not None:
                self._sink.call_event(
                    CallEvent(call_id=c.call_id, seq=0, type=CallEventType.OVERDUE,
                              data={"kind": "complaint", "complaint_id": c.id,
                                    "deadline_hours": hours})
                )
            n += 1
        return n

    async def check_quietly(self) -> None:
        """One round (run by the supervisor every overdue_check_interval seconds). The
        database may be down: the next round tries again."""
        try:
            await self.check()
        except Exception as exc:
            log.info("dispatch_clock_skipped", error=str(exc)[:200])
