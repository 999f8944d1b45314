"""Complaints in the repository: filed, answered once, listed, found overdue, marked once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import utcnow
from siaga112.records.apply import store
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository

from .factory import call_events


@pytest.fixture
def repo(policy: BlockPolicy, clean: AsyncEngine) -> Repository:
    return Repository(clean, policy)


async def test_file_answer_and_list(repo: Repository, policy: BlockPolicy, clean: AsyncEngine):
    await store(clean, policy, call_events("c1"))
    first = await repo.file_complaint(" +6281111 ", "nobody came", by="sup1", call_id="c1")
    second = await repo.file_complaint("Ibu Sari", "rude operator", by="sup1")
    assert (first.caller, first.call_id, first.answered_at, first.overdue_at) == (
        "+6281111",
        "c1",
        None,
        None,
    )
    assert second.call_id is None and second.id != first.id

    done = await repo.answer_complaint(first.id, "team was delayed by a flood", by="sup2")
    assert done.answered_at is not None
    assert (done.answer, done.answered_by) == ("team was delayed by a flood", "sup2")

    assert [c.id for c in await repo.list_complaints()] == [first.id, second.id]
    assert [c.id for c in await repo.list_complaints(open_only=True)] == [second.id]


async def test_refuses_bad_input_naming_it(repo: Repository):
    with pytest.raises(ValueError, match="no call with call_id 'nope'"):
        await repo.file_complaint("+6281111", "x", by="sup1", call_id="nope")
    with pytest.raises(ValueError, match="non-empty text"):
        await repo.file_complaint("+6281111", "  ", by="sup1")
    with pytest.raises(ValueError, match="no complaint with id 999"):
        await repo.answer_complaint(999, "ok", by="sup1")
    c = await repo.file_complaint("+6281111", "x", by="sup1")
    await repo.answer_complaint(c.id, "ok", by="sup1")
    with pytest.raises(ValueError, match=f"complaint {c.id} was answered already"):
        await repo.answer_complaint(c.id, "again", by="sup1")


async def test_overdue_until_answered_or_marked(repo: Repository):
    now = utcnow()
    late = await repo.file_complaint("a", "late", by="s", filed_at=now - timedelta(hours=80))
    answered = await repo.file_complaint("b", "done", by="s", filed_at=now - timedelta(hours=80))
    await repo.answer_complaint(answered.id, "ok", by="s")
    await repo.file_complaint("c", "fresh", by="s", filed_at=now - timedelta(hours=1))
    deadline = now - timedelta(hours=72)

    assert [c.id for c in await repo.overdue_complaints(deadline)] == [late.id]
    assert await repo.mark_complaint_overdue(late.id) is True
    assert await repo.mark_complaint_overdue(late.id) is False  # once
    assert await repo.overdue_complaints(deadline) == []
    [marked] = [c for c in await repo.list_complaints() if c.id == late.id]
    assert marked.overdue_at is not None and marked.answered_at is None
