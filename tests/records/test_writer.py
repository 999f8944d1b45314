from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from siaga112.devstack.postgres import start_postgres, stop_postgres
from siaga112.model import CallEventType, Disposition, OperatorEvent, OperatorState
from siaga112.records.apply import store
from siaga112.records.policy import BlockPolicy
from siaga112.records.writer import RecordWriter
from siaga112.settings import DatabaseSettings

from .conftest import PORT
from .factory import call_events

FAST = DatabaseSettings(flush_interval=0.02, retry_interval=0.1, batch_size=7)

WriterFactory = Callable[..., RecordWriter]


@pytest.fixture
async def make_writer(
    clean: AsyncEngine, policy: BlockPolicy, tmp_path: Path
) -> AsyncIterator[WriterFactory]:
    made: list[RecordWriter] = []

    def make(journal: Path | None = None, settings: DatabaseSettings = FAST) -> RecordWriter:
        w = RecordWriter(clean, journal or tmp_path / "journal", settings, policy)
        made.append(w)
        return w

    yield make
    for w in made:
        await w.stop(timeout=5)


async def _count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def _call_row(engine: AsyncEngine, call_id: str) -> dict:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM calls WHERE call_id = :c"), {"c": call_id}))
            .mappings()
            .one()
        )
    return dict(row)


async def test_events_fed_twice_are_stored_once(make_writer: WriterFactory, clean: AsyncEngine):
    writer = make_writer()
    writer.start()
    evs = call_events("c1", wait=4.0, talk=30.0, agency="police")
    for ev in evs + evs:
        writer.call_event(ev)
    assert await writer.wait_idle(10)

    assert await _count(clean, "SELECT count(*) FROM call_events") == len(evs)
    row = await _call_row(clean, "c1")
    assert row["caller"] == "+6281234567890"
    assert row["operator"] == "op1"
    assert row["disposition"] == "genuine"
    assert row["category"] == "03"
    assert row["agencies"] == ["police"]
    assert row["wait_seconds"] == pytest.approx(4.0)
    assert row["talk_seconds"] == pytest.approx(30.0)
    async with clean.connect() as conn:
        d = (await conn.execute(text("SELECT * FROM dispatches"))).mappings().one()
    assert (d["call_id"], d["agency"], d["line"], d["outcome"]) == (
        "c1",
        "police",
        "l1",
        "accepted",
    )
    assert writer.backlog == 0 and writer.dropped == 0


async def test_any_order_gives_the_same_row(make_writer: WriterFactory, clean: AsyncEngine):
    writer = make_writer()
    writer.start()
    ordered = call_events("in-order", marked=Disposition.PRANK)
    shuffled = [
        ev.model_copy(update={"call_id": "reversed", "event_id": uuid.uuid4()})
        for ev in reversed(ordered)
    ]
    for ev in ordered + shuffled:
        writer.call_event(ev)
    assert await writer.wait_idle(10)

    a = await _call_row(clean, "in-order")
    b = await _call_row(clean, "reversed")
    skip = {"call_id", "updated_at"}
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }
    # The operator's prank mark wins over ENDED's "genuine".
    assert a["disposition"] == "prank"


async def test_replay_after_crash_writes_nothing_twice(
    make_writer: WriterFactory, clean: AsyncEngine, policy: BlockPolicy, tmp_path: Path
):
    journal = tmp_path / "journal"
    crashed = make_writer(journal)  # journals, never gets to advance: a process killed -9
    stored, pending = call_events("stored"), call_events("pending")
    for ev in stored + pending:
        crashed.call_event(ev)
    # It had committed the first call to PostgreSQL, then died before moving the journal on.
    await store(clean, policy, stored)

    replayer = make_writer(journal)
    assert replayer.backlog == len(stored) + len(pending)
    replayer.start()
    assert await replayer.wait_idle(10)

    assert await _count(clean, "SELECT count(*) FROM call_events") == len(stored) + len(pending)
    assert await _count(clean, "SELECT count(*) FROM calls") == 2
    assert list(journal.glob("*.jsonl")) == []


async def test_postgres_down_mid_stream_loses_nothing(
    make_writer: WriterFactory, clean: AsyncEngine, pg_state_dir: Path
):
    writer = make_writer()
    writer.start()
    before = [ev for n in range(3) for ev in call_events(f"before-{n}")]
    for ev in before:
        writer.call_event(ev)
    assert await writer.wait_idle(10)

    await asyncio.to_thread(stop_postgres, pg_state_dir)
    try:
        during = [ev for n in range(5) for ev in call_events(f"during-{n}")]
        for ev in during:
            writer.call_event(ev)
        while writer.failures == 0:  # noqa: ASYNC110 (until the writer meets the outage)
            await asyncio.sleep(0.02)
        assert writer.backlog == len(during)
    finally:
        await asyncio.to_thread(start_postgres, pg_state_dir, PORT)

    assert await writer.wait_idle(30)
    total = len(before) + len(during)
    assert await _count(clean, "SELECT count(*) FROM call_events") == total
    assert await _count(clean, "SELECT count(DISTINCT event_id) FROM call_events") == total
    assert await _count(clean, "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL") == 8


async def test_full_journal_drops_and_counts(make_writer: WriterFactory, tmp_path: Path):
    writer = make_writer(settings=DatabaseSettings(journal_max_bytes=1024))  # not started
    with capture_logs() as logs:
        for ev in call_events("big", agency="fire"):
            writer.call_event(ev)
    assert writer.dropped > 0
    assert writer.backlog > 0
    assert any(
        e["event"] == "record_dropped_journal_full" and e["log_level"] == "critical" for e in logs
    )


async def test_operator_state_is_the_latest(make_writer: WriterFactory, clean: AsyncEngine):
    writer = make_writer()
    writer.start()
    evs = [
        OperatorEvent(operator="op2", state=OperatorState.AVAILABLE),
        OperatorEvent(operator="op2", state=OperatorState.PAUSED, reason="break"),
    ]
    for ev in reversed(evs):
        writer.operator_event(ev)
    assert await writer.wait_idle(10)
    async with clean.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM operators"))).mappings().one()
    assert (row["operator"], row["state"], row["reason"]) == ("op2", "paused", "break")
    assert await _count(clean, "SELECT count(*) FROM operator_events") == 2


async def test_flags_from_bypass_and_silent_emergency(
    make_writer: WriterFactory, clean: AsyncEngine
):
    writer = make_writer()
    writer.start()
    evs = call_events("flagged")
    base = evs[0]
    extra = [
        base.model_copy(update={"event_id": uuid.uuid4(), "seq": 90 + i, "type": t})
        for i, t in enumerate([CallEventType.BYPASS, CallEventType.SILENT_EMERGENCY])
    ]
    for ev in evs + extra:
        writer.call_event(ev)
    assert await writer.wait_idle(10)
    row = await _call_row(clean, "flagged")
    assert row["flags"] == ["blocked_bypass", "silent_emergency"]


_KILLED_WRITER = """
import asyncio, os, signal, sys
from pathlib import Path
from sqlalchemy.ext.asyncio import create_async_engine
from siaga112.records.policy import BlockPolicy
from siaga112.records.writer import RecordWriter
from siaga112.settings import DatabaseSettings, PolicySettings
from tests.records.factory import call_events

async def main():
    engine = create_async_engine(sys.argv[1])
    settings = DatabaseSettings(flush_interval=0.01, batch_size=5)
    w = RecordWriter(engine, Path(sys.argv[2]), settings, BlockPolicy(engine, PolicySettings()))
    w.start()
    for n in range(4):
        for ev in call_events(f"k{n}"):
            w.call_event(ev)
    await w.wait_idle(10)
    for n in range(4, 8):
        for ev in call_events(f"k{n}"):
            w.call_event(ev)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_kill_9_then_replay_stores_every_event_once(
    make_writer: WriterFactory, clean: AsyncEngine, db_url: str, tmp_path: Path
):
    journal = tmp_path / "journal"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, db_url, str(journal), cwd=Path(__file__).parents[2]
    )
    assert await proc.wait() == -signal.SIGKILL
    assert await _count(clean, "SELECT count(*) FROM calls") >= 4

    replayer = make_writer(journal)
    replayer.start()
    assert await replayer.wait_idle(10)
    per_call = len(call_events("x"))
    assert await _count(clean, "SELECT count(*) FROM call_events") == 8 * per_call
    assert await _count(clean, "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL") == 8


async def test_an_event_the_database_refuses_is_set_aside(
    make_writer: WriterFactory, clean: AsyncEngine, tmp_path: Path
):
    writer = make_writer()
    good = call_events("good")
    poison = good[0].model_copy(
        update={"event_id": uuid.uuid4(), "call_id": "poison", "data": {"caller_raw": "\x00"}}
    )
    for ev in [*good[:3], poison, *good[3:]]:
        writer.call_event(ev)
    writer.start()
    assert await writer.wait_idle(10)
    assert await _count(clean, "SELECT count(*) FROM call_events") == len(good)
    assert writer.rejected == 1
    assert str(poison.event_id) in (tmp_path / "journal" / "rejected.jsonl").read_text()
