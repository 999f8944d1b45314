from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import Disposition
from siaga112.records.apply import store
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository

from .conftest import ChangeCounter
from .factory import call_events

PRANKSTER = "+6281111111111"


async def _pranks(policy: BlockPolicy, engine: AsyncEngine, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        kind = Disposition.PRANK if i % 2 == 0 else Disposition.GHOST
        await store(engine, policy, call_events(f"p{i}", caller=PRANKSTER, disposition=kind))


async def _audit(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT number, action, by FROM block_audit ORDER BY id"))
        return [tuple(r) for r in rows]


async def test_five_pranks_do_not_block_the_sixth_does(
    policy: BlockPolicy, clean: AsyncEngine, changes: ChangeCounter
):
    repo = Repository(clean, policy)
    await _pranks(policy, clean, 5)
    assert await repo.active_blocks() == []
    assert changes.calls == 0

    await _pranks(policy, clean, 1, start=5)
    [entry] = await repo.active_blocks()
    assert (entry.number, entry.by) == (PRANKSTER, "policy")
    assert entry.blocked_until is not None
    assert await _audit(clean) == [(PRANKSTER, "block", "policy")]
    assert changes.calls == 1

    await _pranks(policy, clean, 1, start=6)  # already blocked: no second block
    assert await _audit(clean) == [(PRANKSTER, "block", "policy")]
    assert await repo.referrals() == []


async def test_eleven_pranks_refer_the_number(policy: BlockPolicy, clean: AsyncEngine):
    await _pranks(policy, clean, 10)
    repo = Repository(clean, policy)
    assert await repo.referrals() == []
    await _pranks(policy, clean, 1, start=10)
    [ref] = await repo.referrals()
    assert (ref.number, ref.count) == (PRANKSTER, 11)
    assert [a[1] for a in await _audit(clean)] == ["block", "refer"]


async def test_genuine_calls_never_count(policy: BlockPolicy, clean: AsyncEngine):
    for i in range(8):
        await store(clean, policy, call_events(f"g{i}", caller=PRANKSTER))
    assert await Repository(clean, policy).active_blocks() == []


async def test_expiry_ends_a_block_that_is_due(
    policy: BlockPolicy, clean: AsyncEngine, changes: ChangeCounter
):
    await _pranks(policy, clean, 6)
    assert await policy.expire_due() == []  # not due yet
    async with clean.begin() as conn:
        await conn.execute(text("UPDATE blocklist SET blocked_until = now() - interval '1 s'"))
    assert await policy.expire_due() == [PRANKSTER]
    assert await Repository(clean, policy).active_blocks() == []
    assert [a[1] for a in await _audit(clean)] == ["block", "expire"]
    assert changes.calls == 2


async def test_manual_block_and_unblock_are_audited(
    policy: BlockPolicy, clean: AsyncEngine, changes: ChangeCounter
):
    repo = Repository(clean, policy)
    entry = await policy.block("+6289999999999", None, "threats", "sup1")
    assert entry.blocked_until is None
    assert [b.number for b in await repo.active_blocks()] == ["+6289999999999"]
    assert await policy.unblock("+6289999999999", "appeal", "sup1") is True
    assert await policy.unblock("+6289999999999", "again", "sup1") is False
    assert await repo.active_blocks() == []
    [gone] = await repo.list_blocks(include_expired=True)
    assert gone.active is False and gone.expired_at is not None
    assert await _audit(clean) == [
        ("+6289999999999", "manual_block", "sup1"),
        ("+6289999999999", "unblock", "sup1"),
    ]
    assert changes.calls == 2


async def test_manual_block_refuses_a_number_that_is_not_e164(policy: BlockPolicy):
    with pytest.raises(ValueError, match="E.164"):
        await policy.block("08123", 1, "x", "sup1")


async def test_marking_after_the_call_runs_the_policy(policy: BlockPolicy, clean: AsyncEngine):
    repo = Repository(clean, policy)
    for i in range(6):
        await store(clean, policy, call_events(f"m{i}", caller=PRANKSTER))
    assert await repo.active_blocks() == []
    for i in range(6):
        call = await repo.mark_call(f"m{i}", by="sup1", disposition="prank", category="12")
        assert (call.disposition, call.category) == ("prank", "12")
    [entry] = await repo.active_blocks()
    assert entry.number == PRANKSTER
