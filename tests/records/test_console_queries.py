"""The web console's queries on the real PostgreSQL (records/console.py): a caller's history for
the call card, and the wall's overdue dispatches and complaints."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import CallEvent, CallEventType, Disposition, utcnow
from siaga112.records.apply import store
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from tests.records.factory import call_events

NUMBER = "+6281234500001"


async def test_history_lists_earlier_calls_marks_in_the_window_block_and_referral(
        clean: AsyncEngine, policy: BlockPolicy) -> None:
    now = utcnow()
    evs = [
        *call_events("old-prank", NUMBER, start=now - timedelta(days=40), marked=Disposition.PRANK),
        *call_events("prank", NUMBER, start=now - timedelta(days=2), marked=Disposition.PRANK),
        *call_events("ghost", NUMBER, start=now - timedelta(days=1), marked=Disposition.GHOST),
        *call_events("genuine", NUMBER, start=now - timedelta(hours=1)),
        *call_events("this-call", NUMBER, start=now),
        *call_events("someone-else", "+6281234500002", start=now, marked=Disposition.PRANK),
        CallEvent(call_id="genuine", seq=0, type=CallEventType.NOTE,
                  data={"text": "kebakaran kecil", "by": "op1"}),
        CallEvent(call_id="ghost", seq=99, type=CallEventType.BYPASS, data={}),
    ]
    await store(clean, policy, evs)
    repo = Repository(clean, policy)
    h = await repo.caller_history(NUMBER, window_hours=24 * 30, exclude_call_id="this-call")
    assert [c.call_id for c in h.calls] == ["genuine", "ghost", "prank", "old-prank"]
    assert (h.total, h.marks_in_window, h.blocked, h.referred_at) == (4, 2, False, None)
    assert h.calls[0].note == "kebakaran kecil" and h.calls[1].disposition == "ghost"
    assert (h.calls[0].flags, h.calls[1].flags) == ([], ["blocked_bypass"])

    await policy.block(NUMBER, None, "threats", "test")
    blocked = await repo.caller_history(NUMBER, window_hours=24 * 30)
    assert blocked.blocked and blocked.blocked_until is None and blocked.total == 5
    assert blocked.block_reason == "threats"
    await policy.unblock(NUMBER, "appeal", "test")
    assert not (await repo.caller_history(NUMBER, window_hours=24)).blocked


async def test_the_wall_sees_late_dispatches_and_unanswered_complaints(
        clean: AsyncEngine, policy: BlockPolicy) -> None:
    now = utcnow()
    evs = [*call_events("late", start=now - timedelta(minutes=30), agency="01"),
           *call_events("on-time", start=now - timedelta(minutes=5), agency="02"),
           *call_events("moving", start=now - timedelta(minutes=40), agency="03"),
           *call_events("yesterday", start=now - timedelta(hours=30), agency="04"),
           CallEvent(call_id="moving", seq=0, type=CallEventType.TEAM_MOVING,
                     at=now - timedelta(minutes=30),
                     data={"agency": "03", "dispatch_id": "moving-03"})]
    await store(clean, policy, evs)
    repo = Repository(clean, policy)
    await repo.file_complaint("+6281234500003", "nobody came", "desk",
                              filed_at=now - timedelta(days=4))
    answered = await repo.file_complaint("+6281234500004", "slow", "desk",
                                         filed_at=now - timedelta(days=5))
    await repo.answer_complaint(answered.id, "sorry", "chief")
    await repo.file_complaint("+6281234500005", "rude", "desk", filed_at=now)
    alerts = await repo.wall_alerts(dispatch_deadline=now - timedelta(minutes=15),
                                    complaint_deadline=now - timedelta(hours=72),
                                    since=now - timedelta(hours=24))
    assert [d.dispatch_id for d in alerts.overdue_dispatches] == ["late-01"]
    assert [c.text for c in alerts.overdue_complaints] == ["nobody came"]
