"""The callback list is derived from the calls' records, in the transaction that stores their
events: who goes on it, when an entry closes (called again and reached, or called back and
answered), attempts, the KPI, and events in any order."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import CallEvent, CallEventType, Disposition, utcnow
from siaga112.records.apply import store
from siaga112.records.callbacks import get_callback, list_callbacks
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.records.writer import RecordWriter
from siaga112.settings import DatabaseSettings
from siaga112_testkit.devstack.postgres import start_postgres, stop_postgres
from tests.records.conftest import PORT, clean_tables
from tests.records.factory import call_events

NUMBER = "+6281299990000"
T = CallEventType


def callback_call(call_id: str, of: str, start, answered: bool,
                  number: str = NUMBER) -> list[CallEvent]:
    """The events callbacks.CallbackDialer emits for one callback call."""
    evs = [(T.ARRIVED, 0, {"caller": number, "caller_raw": "0" + number[3:],
                           "line_type": "mobile", "trunk": "trunk-mobile",
                           "direction": "outbound", "callback_of": of, "operator": "op2"})]
    if answered:
        evs.append((T.CONNECTED, 5, {"operator": "op2"}))
    evs.append((T.ENDED, 20, {"disposition": Disposition.CALLBACK.value, "hangup_by": "citizen",
                              "outcome": "answered" if answered else "no_answer"}))
    return [CallEvent(call_id=call_id, seq=i, type=typ, at=start + timedelta(seconds=dt),
                      data=data) for i, (typ, dt, data) in enumerate(evs, 1)]


async def test_an_abandoned_call_goes_on_the_list_and_a_callback_closes_it(
        clean: AsyncEngine, policy: BlockPolicy) -> None:
    t0 = utcnow() - timedelta(minutes=30)
    await store(clean, policy, call_events("a1", NUMBER, start=t0, wait=12, operator=None,
                                           disposition=Disposition.ABANDONED))
    [entry] = await list_callbacks(clean)
    assert (entry.call_id, entry.caller, entry.reason, entry.attempts) == (
        "a1", NUMBER, "abandoned", 0)
    assert entry.trunk == "tsel" and entry.closed_at is None

    # A first try nobody answered: one attempt, still open.
    await store(clean, policy, callback_call("cb1", "a1", t0 + timedelta(minutes=1), False))
    entry = await get_callback(clean, "a1")
    assert entry is not None and entry.attempts == 1 and entry.closed_at is None
    # The second is answered: closed, called back, by that call.
    await store(clean, policy, callback_call("cb2", "a1", t0 + timedelta(minutes=3), True))
    entry = await get_callback(clean, "a1")
    assert entry is not None
    assert (entry.attempts, entry.closed_reason, entry.closed_by_call) == (2, "called_back",
                                                                           "cb2")
    assert await list_callbacks(clean) == []
    assert [c.call_id for c in await list_callbacks(clean, "closed")] == ["a1"]
    # Callback calls are calls of their own, marked as such; they are not 112 calls to count.
    kpis = await Repository(clean, policy).kpis(t0 - timedelta(hours=1), utcnow())
    assert kpis.calls == 1 and kpis.callbacks == 1
    assert kpis.called_back_within_5min_pct == 100.0
    detail = await Repository(clean, policy).get_call("cb2")
    assert detail is not None and detail.call.callback_of == "a1"
    assert detail.call.disposition == "callback" and detail.call.operator == "op2"


async def test_calling_again_and_reaching_an_operator_closes_it(
        clean: AsyncEngine, policy: BlockPolicy) -> None:
    t0 = utcnow() - timedelta(minutes=30)
    await store(clean, policy, call_events("a1", NUMBER, start=t0, operator=None,
                                           disposition=Disposition.ABANDONED))
    # A later call that did not reach anyone either leaves it open (and is an entry itself).
    await store(clean, policy, call_events("a2", NUMBER, start=t0 + timedelta(minutes=2),
                                           operator=None, disposition=Disposition.ABANDONED))
    assert [c.call_id for c in await list_callbacks(clean)] == ["a2", "a1"]  # newest first
    await store(clean, policy, call_events("g1", NUMBER, start=t0 + timedelta(minutes=9)))
    closed = await list_callbacks(clean, "closed")
    assert {(c.call_id, c.closed_reason, c.closed_by_call) for c in closed} == {
        ("a1", "called_again", "g1"), ("a2", "called_again", "g1")}
    kpis = await Repository(clean, policy).kpis(t0 - timedelta(hours=1), utcnow())
    assert kpis.callbacks == 2 and kpis.called_back_within_5min_pct == 0.0


async def test_who_goes_on_the_list(clean: AsyncEngine, policy: BlockPolicy) -> None:
    t0 = utcnow() - timedelta(minutes=30)
    silent = call_events("s1", "+6281200000001", start=t0, operator=None,
                         disposition=Disposition.ABANDONED)
    silent[2] = silent[2].model_copy(update={"data": {"position": 1, "priority": False,
                                                      "flags": ["silent"]}})
    dropped = call_events("d1", "+6281200000002", start=t0, disposition=Disposition.DROPPED)
    answered = call_events("g1", "+6281200000003", start=t0)
    withheld = call_events("w1", "+6281200000004", start=t0, operator=None,
                           disposition=Disposition.ABANDONED)
    withheld[0] = withheld[0].model_copy(update={"data": {"caller_raw": "anonymous",
                                                          "caller": None}})
    blocked = call_events("b1", "+6281200000005", start=t0, operator=None,
                          disposition=Disposition.BLOCKED)
    await store(clean, policy, [*silent, *dropped, *answered, *withheld, *blocked])
    got = {c.call_id: c.reason for c in await list_callbacks(clean, "all")}
    assert got == {"s1": "silent", "d1": "dropped"}


async def test_events_in_any_order_give_the_same_list(clean: AsyncEngine,
                                                      policy: BlockPolicy) -> None:
    t0 = utcnow() - timedelta(minutes=30)
    later = callback_call("cb1", "a1", t0 + timedelta(minutes=2), True)
    # The callback's record arrives first (a journal replayed out of order), then the call.
    await store(clean, policy, later)
    await store(clean, policy, call_events("a1", NUMBER, start=t0, operator=None,
                                           disposition=Disposition.ABANDONED))
    entry = await get_callback(clean, "a1")
    assert entry is not None and entry.closed_reason == "called_back" and entry.attempts == 1
    # Stored again (a replay): the same.
    await store(clean, policy, later)
    again = await get_callback(clean, "a1")
    assert again == entry


async def test_a_caller_abandoned_while_postgres_is_down_is_on_the_list_when_it_is_back(
        clean: AsyncEngine, policy: BlockPolicy, tmp_path: Path, pg_state_dir: Path) -> None:
    """Nothing lost: the entry is derived from the call's record, which waits in the journal."""
    writer = RecordWriter(clean, tmp_path / "journal",
                          DatabaseSettings(flush_interval=0.02, retry_interval=0.1), policy)
    writer.start()
    try:
        await asyncio.to_thread(stop_postgres, pg_state_dir)
        try:
            for ev in call_events("down-1", NUMBER, operator=None,
                                  disposition=Disposition.ABANDONED):
                writer.call_event(ev)
            while writer.failures == 0:  # noqa: ASYNC110 (until the writer meets the outage)
                await asyncio.sleep(0.02)
            assert writer.backlog > 0
        finally:
            await asyncio.to_thread(start_postgres, pg_state_dir, PORT)
        assert await writer.wait_idle(30)
    finally:
        await writer.stop(timeout=5)
    entry = await get_callback(clean, "down-1")
    assert entry is not None and entry.reason == "abandoned" and entry.closed_at is None


async def _entries(engine: AsyncEngine) -> dict[str, tuple[object, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT call_id, caller, reason, attempts, last_attempt_at, closed_at, "
            "closed_by_call, closed_reason, xmin::text::bigint AS version FROM callbacks"))
        return {r.call_id: tuple(r)[1:] for r in rows}


def _scenario(rng: random.Random, t0: datetime) -> list[list[CallEvent]]:
    """Calls of three numbers, in time order: most abandoned (ghost and prank numbers call
    again and again), some reaching an operator, some callbacks of earlier entries."""
    numbers = ["+6281299990001", "+6281299990002", "+6281299990003"]
    calls: list[list[CallEvent]] = []
    abandoned: dict[str, list[str]] = {n: [] for n in numbers}
    for i in range(60):
        number, start = rng.choice(numbers), t0 + timedelta(minutes=i)
        kind = rng.random()
        if kind < 0.15 and abandoned[number]:
            calls.append(callback_call(f"cb{i}", rng.choice(abandoned[number]), start,
                                       answered=rng.random() < 0.5, number=number))
        elif kind < 0.35:
            calls.append(call_events(f"g{i}", number, start=start))
        else:
            calls.append(call_events(f"a{i}", number, start=start, operator=None,
                                     disposition=Disposition.ABANDONED))
            abandoned[number].append(f"a{i}")
    return calls


async def test_batches_in_any_order_give_the_list_one_batch_of_everything_gives(
        clean: AsyncEngine, policy: BlockPolicy) -> None:
    """Each batch recomputes only the entries its calls can change: checked against one batch
    holding every call (which recomputes every entry), for random splits and orders."""
    t0 = utcnow() - timedelta(hours=3)
    for seed in range(6):
        rng = random.Random(seed)
        calls = _scenario(rng, t0)
        everything = [ev for call in calls for ev in call]
        await clean_tables(clean)
        await store(clean, policy, everything)
        expected = {k: v[:-1] for k, v in (await _entries(clean)).items()}
        assert any(v[5] is not None for v in expected.values())  # some closed
        assert any(v[5] is None for v in expected.values())  # some open
        assert any(v[2] for v in expected.values())  # some with attempts

        await clean_tables(clean)
        if seed % 2:  # out of order: a journal replayed late, two daemons' journals
            rng.shuffle(everything)
        at = 0
        while at < len(everything):
            size = rng.randint(1, 25)
            await store(clean, policy, everything[at:at + size])
            at += size
        got = {k: v[:-1] for k, v in (await _entries(clean)).items()}
        assert got == expected, f"seed {seed}"


async def test_an_entry_a_batch_cannot_change_is_not_written_again(
        clean: AsyncEngine, policy: BlockPolicy) -> None:
    t0 = utcnow() - timedelta(hours=1)
    for i in range(30):  # a ghost number's abandoned calls, closed by one that was answered
        await store(clean, policy, call_events(f"a{i}", NUMBER, start=t0 + timedelta(minutes=i),
                                               operator=None, disposition=Disposition.ABANDONED))
    await store(clean, policy, call_events("g1", NUMBER, start=t0 + timedelta(minutes=31)))
    before = await _entries(clean)
    assert all(v[6] == "called_again" for v in before.values())
    # More of the same number: new entries, and a callback of one old entry.
    await store(clean, policy, call_events("a40", NUMBER, start=t0 + timedelta(minutes=40),
                                           operator=None, disposition=Disposition.ABANDONED))
    await store(clean, policy, callback_call("cb1", "a3", t0 + timedelta(minutes=41), False))
    after = await _entries(clean)
    rewritten = {k for k in before if after[k][-1] != before[k][-1]}
    assert rewritten == {"a3"}  # its attempts changed; nothing else of the 30 was touched
    assert after["a3"][2] == 1 and after["a40"][4] is None
