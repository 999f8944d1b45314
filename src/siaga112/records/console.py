"""What the web console reads from the records beyond the API's lists: a caller's history for the
operator's call card (earlier calls, prank and ghost marks in the block policy's window, blocked
or referred now) and the supervisor wall's alerts (dispatches past the team-moving deadline,
complaints past their answer deadline). All SQL is parameterised."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.records.schemas import Complaint, DispatchRecord
from siaga112.records.tables import blocklist, calls, complaints, dispatches, referrals

HISTORY_LIMIT = 10
ALERTS_LIMIT = 50


class EarlierCall(BaseModel):
    call_id: str
    arrived_at: datetime | None
    disposition: str | None
    category: str | None
    operator: str | None
    flags: list[str] = []  # blocked_bypass (pressed 5 through a block), silent, ...
    note: str | None = None


class CallerHistory(BaseModel):
    number: str
    calls: list[EarlierCall]  # newest first, at most HISTORY_LIMIT
    total: int  # every earlier call from the number
    marks_in_window: int  # prank and ghost calls in the block policy's window
    window_hours: float
    blocked_until: datetime | None = None  # an active block's end (None with blocked: for ever)
    blocked: bool = False
    block_reason: str | None = None
    referred_at: datetime | None = None


class WallAlerts(BaseModel):
    overdue_dispatches: list[DispatchRecord]  # past the deadline, no team moving yet
    overdue_complaints: list[Complaint]  # past the deadline, not answered


async def caller_history(engine: AsyncEngine, number: str, window_hours: float,
                         exclude_call_id: str | None = None) -> CallerHistory:
    """Earlier calls from `number` (E.164), newest first; the policy's count of prank and ghost
    marks in the window (the same count that blocks: records/policy.py); its block and
    referral now."""
    mine = calls.c.caller == number
    if exclude_call_id is not None:
        mine = and_(mine, calls.c.call_id != exclude_call_id)
    when = func.coalesce(calls.c.arrived_at, calls.c.ended_at, calls.c.updated_at)
    recent = (select(calls.c.call_id, calls.c.arrived_at, calls.c.disposition, calls.c.category,
                     calls.c.operator, calls.c.flags, calls.c.note)
              .where(mine).order_by(when.desc(), calls.c.call_id).limit(HISTORY_LIMIT))
    total = select(func.count()).select_from(calls).where(mine)
    marks = select(func.count()).select_from(calls).where(
        mine, calls.c.disposition.in_(("prank", "ghost")),
        when >= func.now() - timedelta(hours=window_hours))
    block = select(blocklist.c.blocked_until, blocklist.c.reason).where(
        blocklist.c.number == number, blocklist.c.expired_at.is_(None),
        blocklist.c.blocked_until.is_(None) | (blocklist.c.blocked_until > func.now()))
    referral = select(referrals.c.referred_at).where(referrals.c.number == number)
    async with engine.connect() as conn:
        rows = (await conn.execute(recent)).mappings().all()
        n_total = (await conn.execute(total)).scalar_one()
        n_marks = (await conn.execute(marks)).scalar_one()
        blocked = (await conn.execute(block)).first()
        referred = (await conn.execute(referral)).scalar_one_or_none()
    return CallerHistory(
        number=number, calls=[EarlierCall.model_validate(dict(r)) for r in rows],
        total=n_total, marks_in_window=n_marks, window_hours=window_hours,
        blocked=blocked is not None,
        blocked_until=blocked.blocked_until if blocked is not None else None,
        block_reason=blocked.reason if blocked is not None else None,
        referred_at=referred,
    )


async def wall_alerts(engine: AsyncEngine, dispatch_deadline: datetime,
                      complaint_deadline: datetime, since: datetime) -> WallAlerts:
    """Dispatches requested in [since, dispatch_deadline) with no team moving (newest first),
    and complaints filed before `complaint_deadline` and not answered (oldest first); at most
    ALERTS_LIMIT of each."""
    late = (select(dispatches)
            .where(dispatches.c.requested_at < dispatch_deadline,
                   dispatches.c.requested_at >= since,
                   dispatches.c.moving_at.is_(None))
            .order_by(dispatches.c.requested_at.desc()).limit(ALERTS_LIMIT))
    unanswered = (select(complaints)
                  .where(complaints.c.filed_at < complaint_deadline,
                         complaints.c.answered_at.is_(None))
                  .order_by(complaints.c.filed_at).limit(ALERTS_LIMIT))
    async with engine.connect() as conn:
        d = (await conn.execute(late)).mappings().all()
        c = (await conn.execute(unanswered)).mappings().all()
    return WallAlerts(overdue_dispatches=[DispatchRecord.model_validate(dict(r)) for r in d],
                      overdue_complaints=[Complaint.model_validate(dict(r)) for r in c])
