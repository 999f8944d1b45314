"""Queries behind the CLI and the HTTP API. All SQL is parameterised."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy import ColumnElement, and_, any_, func, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import BlockEntry, CallEvent, CallEventType, Disposition
from siaga112.records import console
from siaga112.records.apply import store
from siaga112.records.console import CallerHistory, WallAlerts
from siaga112.records.kpis import kpis
from siaga112.records.policy import BlockPolicy
from siaga112.records.schemas import (
    BlockRecord,
    CallDetail,
    CallEventRecord,
    CallRecord,
    Complaint,
    DispatchRecord,
    DispatchRow,
    Kpis,
    Referral,
)
from siaga112.records.tables import (
    blocklist,
    call_events,
    calls,
    complaints,
    dispatches,
    referrals,
)
from siaga112.settings import PolicySettings

log = structlog.get_logger(__name__)

_ACTIVE = and_(
    blocklist.c.expired_at.is_(None),
    (blocklist.c.blocked_until.is_(None)) | (blocklist.c.blocked_until > func.now()),
)

# How long a lookup waits for the writer to store what it holds (records/writer.py flush).
CATCH_UP_TIMEOUT = 2.0


class Pending(Protocol):
    """The records writer, seen from a reader: what it holds and a way to store it now."""

    @property
    def backlog(self) -> int: ...

    async def flush(self, timeout: float) -> bool: ...  # noqa: ASYNC109


class Repository:
    def __init__(self, engine: AsyncEngine, policy: BlockPolicy | None = None,
                 pending: Pending | None = None) -> None:
        """policy runs on mark_call; by default the stock thresholds with no reload hook.
        pending: the daemon's records writer. It stores every store_interval, so the record
        of a call that ended in the last second may still be in its journal: a lookup of one
        call or dispatch that finds nothing, and a mark (whose events must follow the call's
        last), have it stored first."""
        self._engine = engine
        self._policy = policy or BlockPolicy(engine, PolicySettings.model_validate({}))
        self._pending = pending

    async def _catch_up(self) -> bool:
        """Have the writer store what it holds; False when it held nothing (or could not)."""
        if self._pending is None or not self._pending.backlog:
            return False
        return await self._pending.flush(CATCH_UP_TIMEOUT)

    async def ping(self, within: float = 1.0) -> bool:
        """True when the database answers ``SELECT 1`` within `within` seconds (for /ready):
        any failure is False, never an exception."""
        try:
            async with asyncio.timeout(within):
                async with self._engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.info("database_ping_failed", error=repr(exc))
            return False
        return True

    # -- blocklist ---------------------------------------------------------------------------

    async def active_blocks(self) -> list[BlockEntry]:
        """Numbers blocked now (what screening loads)."""
        q = select(blocklist).where(_ACTIVE).order_by(blocklist.c.number)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [BlockEntry.model_validate(dict(r)) for r in rows]

    async def list_blocks(self, include_expired: bool = False) -> list[BlockRecord]:
        q = select(blocklist, _ACTIVE.label("active")).order_by(blocklist.c.number)
        if not include_expired:
            q = q.where(_ACTIVE)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [BlockRecord.model_validate(dict(r)) for r in rows]

    # -- calls -------------------------------------------------------------------------------

    async def list_calls(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        caller: str | None = None,
        disposition: str | None = None,
        operator: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CallRecord]:
        q = select(calls)
        if since is not None:
            q = q.where(calls.c.arrived_at >= since)
        if until is not None:
            q = q.where(calls.c.arrived_at < until)
        if caller is not None:
            q = q.where(calls.c.caller == caller)
        if disposition is not None:
            q = q.where(calls.c.disposition == Disposition(disposition).value)
        if operator is not None:  # every call the operator was connected to
            q = q.where(literal(operator) == any_(calls.c.operators))
        q = q.order_by(calls.c.arrived_at.desc().nulls_last(), calls.c.call_id)
        q = q.limit(limit).offset(offset)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [CallRecord.model_validate(dict(r)) for r in rows]

    async def get_call(self, call_id: str) -> CallDetail | None:
        detail = await self._get_call(call_id)
        if detail is None and await self._catch_up():
            detail = await self._get_call(call_id)
        return detail

    async def _get_call(self, call_id: str) -> CallDetail | None:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(calls).where(calls.c.call_id == call_id)))
                .mappings()
                .first()
            )
            if row is None:
                return None
            evs = (
                await conn.execute(
                    select(call_events)
                    .where(call_events.c.call_id == call_id)
                    .order_by(call_events.c.seq, call_events.c.at)
                )
            ).mappings()
            disp = (
                await conn.execute(
                    select(dispatches)
                    .where(dispatches.c.call_id == call_id)
                    .order_by(dispatches.c.requested_at)
                )
            ).mappings()
            return CallDetail(
                call=CallRecord.model_validate(dict(row)),
                events=[CallEventRecord.model_validate(dict(e)) for e in evs],
                dispatches=[DispatchRecord.model_validate(dict(d)) for d in disp],
            )

    async def mark_call(
        self,
        call_id: str,
        by: str,
        disposition: str | None = None,
        category: str | None = None,
    ) -> CallRecord:
        """Mark a call after the fact, as DISPOSITION / CATEGORY events through the same store
        as the writer's (so the prank policy runs). ValueError for an unknown call or value."""
        if disposition is None and category is None:
            raise ValueError("mark_call needs a disposition or a category")
        if disposition is not None:
            disposition = Disposition(disposition).value
        if category is not None and not (category.isdigit() and 1 <= int(category) <= 12):
            raise ValueError(f"category must be a code 01..12, got {category!r}")
        await self._catch_up()
        async with self._engine.connect() as conn:
            seq = (
                await conn.execute(
                    select(func.max(call_events.c.seq)).where(call_events.c.call_id == call_id)
                )
            ).scalar()
        if seq is None:
            raise ValueError(f"no call with call_id {call_id!r}")
        evs: list[CallEvent] = []
        if disposition is not None:
            seq += 1
            evs.append(
                CallEvent(
                    call_id=call_id,
                    seq=seq,
                    type=CallEventType.DISPOSITION,
                    data={"disposition": disposition, "by": by},
                )
            )
        if category is not None:
            evs.append(
                CallEvent(
                    call_id=call_id,
                    seq=seq + 1,
                    type=CallEventType.CATEGORY,
                    data={"category": f"{int(category):02d}", "by": by},
                )
            )
        await store(self._engine, self._policy, evs)
        detail = await self.get_call(call_id)
        assert detail is not None
        return detail.call

    async def open_calls(self, older_than: datetime) -> list[str]:
        """Calls that arrived before older_than and have no ENDED event, oldest first (after a
        restart the daemon closes those that are no longer live in Asterisk)."""
        q = (
            select(calls.c.call_id)
            .where(calls.c.arrived_at < older_than, calls.c.ended_at.is_(None))
            .order_by(calls.c.arrived_at, calls.c.call_id)
        )
        async with self._engine.connect() as conn:
            return list((await conn.execute(q)).scalars())

    # -- dispatches --------------------------------------------------------------------------

    async def overdue_dispatches(self, deadline: datetime) -> list[DispatchRow]:
        """Dispatches requested before deadline with no team moving and not yet reported
        overdue (an OVERDUE event sets overdue_at), oldest first."""
        q = (
            select(
                dispatches.c.dispatch_id,
                dispatches.c.call_id,
                dispatches.c.agency,
                dispatches.c.requested_at,
                dispatches.c.accepted_at,
            )
            .where(
                dispatches.c.requested_at < deadline,
                dispatches.c.moving_at.is_(None),
                dispatches.c.overdue_at.is_(None),
            )
            .order_by(dispatches.c.requested_at, dispatches.c.dispatch_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [DispatchRow.model_validate(dict(r)) for r in rows]

    async def agency_dispatch(self, dispatch_id: str, agency: str) -> DispatchRow | None:
        """The dispatch `dispatch_id` if it exists and is agency `agency`'s, else None. What an
        agency reports about a dispatch (its team is moving) is taken only for its own: never
        for another agency's dispatch (whose overdue alert it would silence), never for one
        that does not exist (a phantom row)."""
        q = select(
            dispatches.c.dispatch_id,
            dispatches.c.call_id,
            dispatches.c.agency,
            dispatches.c.requested_at,
            dispatches.c.accepted_at,
        ).where(
            dispatches.c.dispatch_id == dispatch_id,
            dispatches.c.agency == agency,
            dispatches.c.requested_at.is_not(None),
        )
        for attempt in (1, 2):
            async with self._engine.connect() as conn:
                row = (await conn.execute(q)).mappings().first()
            if row is not None or attempt == 2 or not await self._catch_up():
                break
        return None if row is None else DispatchRow.model_validate(dict(row))

    # -- complaints --------------------------------------------------------------------------

    async def file_complaint(
        self,
        caller: str,
        text: str,
        by: str,
        call_id: str | None = None,
        filed_at: datetime | None = None,
    ) -> Complaint:
        """Take a complaint down. filed_at (default now) is when the centre received it: the
        answer deadline runs from there. ValueError for an empty field or an unknown call."""
        for name, value in (("caller", caller), ("text", text), ("by", by)):
            if not value.strip():
                raise ValueError(f"a complaint needs a non-empty {name}")
        async with self._engine.begin() as conn:
            if call_id is not None:
                known = await conn.execute(
                    select(calls.c.call_id).where(calls.c.call_id == call_id)
                )
                if known.first() is None:
                    raise ValueError(f"no call with call_id {call_id!r}")
            values: dict[str, object] = {
                "caller": caller.strip(),
                "text": text.strip(),
                "by": by.strip(),
                "call_id": call_id,
            }
            if filed_at is not None:
                values["filed_at"] = filed_at
            row = (
                (await conn.execute(complaints.insert().values(values).returning(complaints)))
                .mappings()
                .one()
            )
        return Complaint.model_validate(dict(row))

    async def answer_complaint(self, id: int, answer: str, by: str) -> Complaint:
        """Record the answer. ValueError for an unknown id, an empty answer or one answered
        before."""
        if not answer.strip() or not by.strip():
            raise ValueError("an answer needs a non-empty answer text and by")
        async with self._engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        update(complaints)
                        .where(complaints.c.id == id, complaints.c.answered_at.is_(None))
                        .values(answered_at=func.now(), answer=answer.strip(), answered_by=by)
                        .returning(complaints)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                before = (
                    await conn.execute(
                        select(complaints.c.answered_at).where(complaints.c.id == id)
                    )
                ).first()
                if before is None:
                    raise ValueError(f"no complaint with id {id}")
                raise ValueError(f"complaint {id} was answered already at {before.answered_at}")
        return Complaint.model_validate(dict(row))

    async def list_complaints(self, open_only: bool = False) -> list[Complaint]:
        """Complaints, oldest first; open_only: those not answered yet."""
        return await self._complaints(*([complaints.c.answered_at.is_(None)] if open_only else []))

    async def overdue_complaints(self, deadline: datetime) -> list[Complaint]:
        """Unanswered complaints filed before deadline and not yet marked overdue."""
        return await self._complaints(
            complaints.c.filed_at < deadline,
            complaints.c.answered_at.is_(None),
            complaints.c.overdue_at.is_(None),
        )

    async def _complaints(self, *where: ColumnElement[bool]) -> list[Complaint]:
        q = select(complaints).where(*where).order_by(complaints.c.filed_at, complaints.c.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [Complaint.model_validate(dict(r)) for r in rows]

    async def mark_complaint_overdue(self, id: int) -> bool:
        """Set overdue_at once. False when it was set already (or there is no such id), so
        that two clocks never report one complaint twice."""
        async with self._engine.begin() as conn:
            res = await conn.execute(
                update(complaints)
                .where(complaints.c.id == id, complaints.c.overdue_at.is_(None))
                .values(overdue_at=func.now())
                .returning(complaints.c.id)
            )
            return res.first() is not None

    # -- referrals ---------------------------------------------------------------------------

    async def referrals(self, only_new: bool = False) -> list[Referral]:
        q = select(referrals).order_by(referrals.c.referred_at, referrals.c.number)
        if only_new:
            q = q.where(referrals.c.exported_at.is_(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [Referral.model_validate(dict(r)) for r in rows]

    async def mark_exported(self, numbers: list[str]) -> None:
        if not numbers:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(referrals)
                .where(referrals.c.number.in_(numbers))
                .values(exported_at=func.now())
            )

    # -- KPIs --------------------------------------------------------------------------------

    async def kpis(self, since: datetime, until: datetime) -> Kpis:
        return await kpis(self._engine, since, until)

    # -- the web console (records/console.py) ------------------------------------------------

    async def caller_history(self, number: str, window_hours: float,
                             exclude_call_id: str | None = None) -> CallerHistory:
        return await console.caller_history(self._engine, number, window_hours, exclude_call_id)

    async def wall_alerts(self, dispatch_deadline: datetime, complaint_deadline: datetime,
                          since: datetime) -> WallAlerts:
        return await console.wall_alerts(self._engine, dispatch_deadline, complaint_deadline,
                                         since)
