from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from structlog.testing import capture_logs

from siaga112.api import Api
from siaga112.model import CallEventType, Disposition, OperatorEvent, OperatorState
from siaga112.records import apply as apply_module
from siaga112.records import writer as writer_module
from siaga112.records.apply import store
from siaga112.records.engine import connect_args
from siaga112.records.faults import Fault, classify
from siaga112.records.policy import BlockPolicy
from siaga112.records.quarantine import QUARANTINE_FILE
from siaga112.records.repository import Repository
from siaga112.records.writer import RecordWriter
from siaga112.settings import DatabaseSettings, PolicySettings
from tests.unit.test_http_api_fakes import FakeDaemon, bearer, make_settings

from .conftest import postgres_stopped
from .factory import call_events


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"error {sqlstate}")
        self.sqlstate = sqlstate


def _dbapi(sqlstate: str) -> DBAPIError:
    return DBAPIError("SELECT 1", None, _DriverError(sqlstate))


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

    async with postgres_stopped(pg_state_dir):
        during = [ev for n in range(5) for ev in call_events(f"during-{n}")]
        for ev in during:
            writer.call_event(ev)
        while writer.failures == 0:  # noqa: ASYNC110 (until the writer meets the outage)
            await asyncio.sleep(0.02)
        assert writer.backlog == len(during)

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
from siaga112.records import writer as writer_module
from siaga112.records.faults import Fault, classify
from siaga112.records.quarantine import QUARANTINE_FILE
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


async def test_an_event_the_database_refuses_is_quarantined(
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
    assert writer.quarantined == 1
    (entry,) = quarantine(tmp_path)
    assert str(poison.event_id) in entry["line"]
    assert entry["reason"].startswith("refused by the database: [22P05]")
    assert not (tmp_path / "journal" / "rejected.jsonl").exists()


def quarantine(tmp_path: Path) -> list[dict[str, str]]:
    """The quarantine file's entries (outside the journal: state_dir/quarantine)."""
    path = tmp_path / "quarantine" / QUARANTINE_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_stray_files_in_the_journal_do_not_stop_the_start(
    make_writer: WriterFactory, clean: AsyncEngine, tmp_path: Path
):
    journal = tmp_path / "journal"
    first = make_writer(journal)
    for ev in call_events("before"):
        first.call_event(ev)
    await first.stop()
    (journal / "rejected.jsonl").write_text('{"k":"c","e":{}}\n')  # left by older versions
    (journal / "foo.txt").write_text("an operator's notes\n")

    writer = make_writer(journal)
    writer.start()
    for ev in call_events("after"):
        writer.call_event(ev)
    assert await writer.wait_idle(10)
    assert await _count(clean, "SELECT count(*) FROM calls") == 2
    assert (journal / "foo.txt").exists()  # not ours: left alone
    # The old rejected file is moved out of the journal, into the quarantine.
    assert not (journal / "rejected.jsonl").exists()
    assert [p.name[:9] for p in (tmp_path / "quarantine").iterdir()] == ["rejected-"]


async def test_a_torn_last_line_and_a_corrupt_middle_line_are_quarantined(
    make_writer: WriterFactory, clean: AsyncEngine, tmp_path: Path
):
    journal = tmp_path / "journal"
    crashed = make_writer(journal)
    evs = call_events("c1") + call_events("c2")
    for ev in evs[:4]:
        crashed.call_event(ev)
    await crashed.stop()
    (seg,) = journal.glob("*.jsonl")
    append_bytes(seg, b'{"k":"c","e":{"call_id":\xff\xfe}\n')  # corrupt, in the middle
    append_bytes(seg, b'{"k":"o","e":{"operator":"op1"}}\n')  # well-formed JSON, not an event
    append_bytes(seg, b'{"k":"c","e":{"event_id":"')  # the power went out here
    writer = make_writer(journal)
    for ev in evs[4:]:
        writer.call_event(ev)  # in a new segment, after the torn one
    with capture_logs() as logs:
        writer.start()
        assert await writer.wait_idle(10)
    assert await _count(clean, "SELECT count(*) FROM call_events") == len(evs)
    assert writer.quarantined == 3
    reasons = [e["reason"] for e in quarantine(tmp_path)]
    assert reasons[0].startswith("unreadable: UnicodeDecodeError")
    assert reasons[1].startswith("unreadable: ") and "invalid fields" in reasons[1]
    assert reasons[2].startswith("torn line")
    assert "line_b64" in quarantine(tmp_path)[0]
    assert [e["reason"] for e in logs if e["event"] == "record_quarantined"] == reasons
    assert list(journal.glob("*.jsonl")) == []
    assert writer.problems == []


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def refusing_store(sql: str, poison: str):
    """store(), but a batch holding the call `poison` also runs `sql` in its transaction: a
    real refusal by PostgreSQL, of the class the statement provokes."""

    async def refusing(engine, policy, call_evs, operator_evs=()):
        if any(ev.call_id == poison for ev in call_evs):
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        return await store(engine, policy, call_evs, operator_evs)

    return refusing


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("SELECT 1 / 0", "22012"),  # data exception
        ("INSERT INTO calls (call_id, agencies) VALUES ('x', NULL)", "23502"),  # integrity
        ("SELECT * FROM no_such_table", "42P01"),  # syntax error or access rule
    ],
)
async def test_a_record_refused_for_good_is_quarantined_not_retried(
    make_writer: WriterFactory, clean: AsyncEngine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, sql: str, sqlstate: str,
):
    monkeypatch.setattr(writer_module, "store", refusing_store(sql, "poison"))
    writer = make_writer()
    good, poison = call_events("good"), call_events("poison")[:1]
    for ev in good[:2] + poison + good[2:]:
        writer.call_event(ev)
    with capture_logs() as logs:
        writer.start()
        assert await writer.wait_idle(10)
    assert await _count(clean, "SELECT count(*) FROM call_events") == len(good)
    (entry,) = quarantine(tmp_path)
    assert entry["reason"].startswith(f"refused by the database: [{sqlstate}]")
    assert writer.failures == 0 and writer.quarantined == 1
    events = [e["event"] for e in logs]
    assert "record_batch_failed_will_retry" not in events
    assert "records_database_unavailable" not in events


async def test_an_index_row_too_large_is_quarantined(
    make_writer: WriterFactory, clean: AsyncEngine, tmp_path: Path
):
    writer = make_writer()
    good = call_events("good")
    huge = good[0].model_copy(update={"event_id": uuid.uuid4(), "call_id": _incompressible(20_000)})
    for ev in [huge, *good]:
        writer.call_event(ev)
    writer.start()
    assert await writer.wait_idle(10)
    assert await _count(clean, "SELECT count(*) FROM call_events") == len(good)
    (entry,) = quarantine(tmp_path)
    assert entry["reason"].startswith("refused by the database: [54000]")
    assert writer.failures == 0


def _incompressible(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()[:n]


async def test_a_fault_that_may_pass_is_retried_then_quarantined(
    make_writer: WriterFactory, clean: AsyncEngine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    tries: list[str] = []

    async def flaky(engine, policy, call_evs, operator_evs=()):
        if any(ev.call_id == "odd" for ev in call_evs):
            tries.append("odd")
            raise RuntimeError("not a database error")  # no SQLSTATE: may pass
        return await store(engine, policy, call_evs, operator_evs)

    monkeypatch.setattr(writer_module, "store", flaky)
    writer = make_writer(settings=DatabaseSettings(flush_interval=0.02, retry_interval=0.01,
                                                   batch_size=50, quarantine_after=3))
    for ev in call_events("fine") + call_events("odd")[:1]:
        writer.call_event(ev)
    writer.start()
    assert await writer.wait_idle(10)
    assert len(tries) == 3 + 1  # the batch three times, then the record alone
    assert await _count(clean, "SELECT count(*) FROM calls") == 1
    (entry,) = quarantine(tmp_path)
    assert entry["reason"].startswith("failed 3 times: RuntimeError")
    assert writer.failures == 0


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (OSError("connection refused"), Fault.DOWN),
        (TimeoutError(), Fault.DOWN),
        (_dbapi("57014"), Fault.DOWN),  # statement timeout
        (_dbapi("57P01"), Fault.DOWN),  # admin shutdown
        (_dbapi("08006"), Fault.DOWN),
        (_dbapi("53100"), Fault.DOWN),  # the server's disk is full
        (_dbapi("40P01"), Fault.TRANSIENT),  # deadlock
        (_dbapi("22P05"), Fault.PERMANENT),
        (_dbapi("23505"), Fault.PERMANENT),
        (_dbapi("42P01"), Fault.PERMANENT),
        (_dbapi("54000"), Fault.PERMANENT),
        (RuntimeError("?"), Fault.TRANSIENT),
        # asyncpg's own, from the writer's transaction on the driver (records/driver.py)
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle"), Fault.DOWN),
        (asyncpg.exceptions.AdminShutdownError("terminated"), Fault.DOWN),
        (ConnectionError("the database connection was lost"), Fault.DOWN),
        (asyncpg.exceptions.UniqueViolationError("dup"), Fault.PERMANENT),
    ],
)
def test_classify(exc: BaseException, fault: Fault) -> None:
    assert classify(exc) is fault


async def test_while_the_database_is_away_each_batch_is_fsynced(
    make_writer: WriterFactory, clean: AsyncEngine, pg_state_dir: Path
):
    writer = make_writer()
    writer.start()
    async with postgres_stopped(pg_state_dir):
        for n in range(3):
            for ev in call_events(f"away-{n}"):
                writer.call_event(ev)
            syncs = writer.syncs
            while writer.syncs == syncs:  # noqa: ASYNC110 (until the writer fsyncs them)
                await asyncio.sleep(0.01)
            assert not writer._journal.unsynced
        assert writer.failures > 0
    assert await writer.wait_idle(30)
    assert await _count(clean, "SELECT count(*) FROM calls") == 3


async def test_dropped_and_quarantined_in_metrics_and_degraded_on_ready(
    make_writer: WriterFactory, clean: AsyncEngine, policy: BlockPolicy
):
    writer = make_writer(settings=DatabaseSettings(journal_max_bytes=1024))  # not started
    for ev in call_events("big", agency="fire"):
        writer.call_event(ev)
    daemon = FakeDaemon(settings=make_settings(), engine=clean, repository=Repository(clean),
                        policy=policy, writer=writer)  # type: ignore[arg-type]
    daemon.events.connected.set()
    daemon.metrics.watch_records(writer)
    async with TestClient(TestServer(Api(daemon).app)) as client:
        resp = await client.get("/ready", headers=bearer("supervisor"))
        assert resp.status == 503
        body = await resp.json()
        assert (body["ready"], body["database"], body["journal"], body["journal_problems"]) == (
            False, True, "degraded", ["journal_full"])
        resp = await client.get("/metrics", headers=bearer("supervisor"))
        assert resp.status == 200
        text_ = await resp.text()
    assert f"siaga112_records_dropped_total {float(writer.dropped)}" in text_
    assert writer.dropped > 0
    assert "siaga112_records_degraded 1.0" in text_
    assert 'siaga112_records_problem{problem="journal_full"} 1.0' in text_
    # Room again (the database took the backlog): the next record is kept, degraded clears.
    writer.start()
    assert await writer.wait_idle(10)
    writer.call_event(call_events("later")[0])
    assert writer.problems == []


async def test_a_hung_database_times_out_and_the_writer_goes_on(
    clean: AsyncEngine, db_url: str, tmp_path: Path
):
    engine = create_async_engine(db_url, connect_args=connect_args(0.5))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "500ms"
        writer = RecordWriter(engine, tmp_path / "journal", FAST,
                              BlockPolicy(engine, PolicySettings()))
        with capture_logs() as logs:
            async with clean.begin() as holder:  # another session holds the table: writes hang
                await holder.execute(text("LOCK TABLE call_events IN ACCESS EXCLUSIVE MODE"))
                writer.start()
                for ev in call_events("held"):
                    writer.call_event(ev)
                while writer.failures == 0:  # noqa: ASYNC110 (until a statement times out)
                    await asyncio.sleep(0.05)
            assert await writer.wait_idle(10)
        await writer.stop()
        away = [e for e in logs if e["event"] == "records_database_unavailable"]
        assert away and "[57014]" in away[0]["error"]
        assert writer.quarantined == 0
        assert await _count(clean, "SELECT count(*) FROM call_events") == len(call_events("x"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "table",
    [
        "call_events",  # the first statement: nothing of the batch written yet
        "calls",  # the recompute: the events already inserted in the transaction
        "operators",  # the last statement: everything before it written, then rolled back
    ],
)
async def test_a_connection_cut_in_the_middle_of_a_batch_is_the_database_away(
    make_writer: WriterFactory, clean: AsyncEngine, table: str
):
    """The writer's backend is ended by the server while its batch waits inside the
    transaction, at each of its statements in turn: the batch is kept and stored once on a
    new connection, nothing quarantined."""
    writer = make_writer()
    evs = call_events("cut")
    desk = OperatorEvent(operator="op1", state=OperatorState.AVAILABLE)
    async with clean.begin() as holder:  # another session holds the table: the writer waits
        await holder.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        writer.start()
        for ev in evs:
            writer.call_event(ev)
        writer.operator_event(desk)
        waiting: list[int] = []
        for _ in range(200):
            # pg_stat_activity is read once per transaction unless its snapshot is cleared
            await holder.execute(text("SELECT pg_stat_clear_snapshot()"))
            waiting = list((await holder.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))).scalars())
            if waiting:
                break
            await asyncio.sleep(0.02)
        assert len(waiting) == 1, f"the writer never waited for the lock on {table}"
        assert (await holder.execute(text("SELECT pg_terminate_backend(:p)"),
                                     {"p": waiting[0]})).scalar_one()
        while writer.failures == 0:  # noqa: ASYNC110 (until the writer meets the cut)
            await asyncio.sleep(0.02)
    assert await writer.wait_idle(10)
    assert writer.quarantined == 0
    assert writer.backlog == 0
    assert await _count(clean, "SELECT count(*) FROM call_events") == len(evs)
    assert (await _call_row(clean, "cut"))["ended_at"] is not None
    assert await _count(clean, "SELECT count(*) FROM operator_events") == 1
    assert await _count(clean, "SELECT count(*) FROM operators WHERE operator = 'op1'") == 1


# -- cadence: stored every store_interval, fsynced every flush_interval in between ------------

SLOW_STORE = DatabaseSettings(flush_interval=0.02, store_interval=30, retry_interval=0.1,
                              batch_size=50)


async def _started_and_settled(writer: RecordWriter) -> None:
    """Started, with its first pass (the replay) done: the next store is store_interval away."""
    writer.start()
    assert await writer.flush(10)


async def test_between_stores_the_journal_is_fsynced_and_flush_stores_it_now(
    make_writer: WriterFactory, clean: AsyncEngine
):
    writer = make_writer(settings=SLOW_STORE)
    await _started_and_settled(writer)
    syncs = writer.syncs
    for ev in call_events("between"):
        writer.call_event(ev)
    while writer.syncs == syncs:  # noqa: ASYNC110 (within flush_interval, not store_interval)
        await asyncio.sleep(0.01)
    assert not writer._journal.unsynced  # on the disk for a power cut ...
    assert await _count(clean, "SELECT count(*) FROM calls") == 0  # ... not stored yet
    assert writer.backlog == len(call_events("between"))

    assert await writer.flush(10)
    assert await _count(clean, "SELECT count(*) FROM calls WHERE call_id = 'between'") == 1
    assert writer.backlog == 0


async def test_an_idle_writer_sleeps_until_something_is_journalled(
    make_writer: WriterFactory, clean: AsyncEngine
):
    # flush_interval 0.02 s: before, it read the empty journal 50 times a second.
    writer = make_writer(settings=DatabaseSettings(flush_interval=0.02, store_interval=0.2,
                                                   retry_interval=0.1, batch_size=50))
    await _started_and_settled(writer)
    reads = writer._reads
    await asyncio.sleep(0.5)
    assert writer._reads == reads  # nothing journalled: no read
    # A call's events, journalled as a call makes them, are stored without anyone asking,
    # within the cadence (the first at once after the sleep, the rest with the next store).
    events = call_events("after-idle")
    for ev in events:
        writer.call_event(ev)
        await asyncio.sleep(0.01)

    async def stored() -> int:
        return await _count(clean, "SELECT count(*) FROM call_events WHERE call_id = "
                                   "'after-idle'")

    for _ in range(300):
        if await stored() == len(events):
            break
        await asyncio.sleep(0.01)
    assert await stored() == len(events)
    assert writer.backlog == 0
    assert writer._reads - reads <= 4  # batched by the cadence, not one store an event
    reads = writer._reads
    await asyncio.sleep(0.3)
    assert writer._reads == reads  # asleep again


async def test_a_full_batch_is_stored_without_waiting_for_store_interval(
    make_writer: WriterFactory, clean: AsyncEngine
):
    writer = make_writer(settings=SLOW_STORE)
    await _started_and_settled(writer)
    evs = [ev for n in range(10) for ev in call_events(f"full-{n}")]
    assert len(evs) >= SLOW_STORE.batch_size
    for ev in evs:
        writer.call_event(ev)

    async def stored() -> int:
        return await _count(clean, "SELECT count(*) FROM call_events")

    for _ in range(500):  # 5 s, against a store_interval of 30 s
        if await stored() >= SLOW_STORE.batch_size:
            break
        await asyncio.sleep(0.01)
    assert await stored() >= SLOW_STORE.batch_size


async def test_flush_says_false_while_the_database_is_away_and_keeps_everything(
    make_writer: WriterFactory, clean: AsyncEngine, pg_state_dir: Path
):
    writer = make_writer(settings=SLOW_STORE)
    await _started_and_settled(writer)
    async with postgres_stopped(pg_state_dir):
        for ev in call_events("away-flush"):
            writer.call_event(ev)
        assert not await writer.flush(0.5)
        assert writer.backlog == len(call_events("away-flush"))
    assert await writer.flush(30)
    assert await _count(clean, "SELECT count(*) FROM calls WHERE call_id = 'away-flush'") == 1


async def test_the_repository_finds_and_marks_a_call_the_writer_still_holds(
    make_writer: WriterFactory, clean: AsyncEngine, policy: BlockPolicy
):
    """An operator marks the call that ended a moment ago: its record is still in the journal
    (stored every store_interval); the lookup has it stored first, and the mark's events come
    after the call's last."""
    writer = make_writer(settings=SLOW_STORE)
    await _started_and_settled(writer)
    repo = Repository(clean, policy, pending=writer)
    evs = call_events("just-ended", agency="fire")
    for ev in evs:
        writer.call_event(ev)
    assert writer.backlog == len(evs)

    record = await repo.mark_call("just-ended", "op1", disposition=Disposition.PRANK.value)
    assert record.disposition == Disposition.PRANK.value
    detail = await repo.get_call("just-ended")
    assert detail is not None
    marks = [e for e in detail.events if e.type == CallEventType.DISPOSITION.value]
    assert marks[-1].seq > max(ev.seq for ev in evs)

    for ev in call_events("later-ended"):
        writer.call_event(ev)
    assert (await repo.get_call("later-ended")) is not None
    assert await repo.get_call("never-was") is None
    for ev in call_events("dispatched", agency="police"):
        writer.call_event(ev)
    found = await repo.agency_dispatch("dispatched-police", "police")
    assert found is not None and found.call_id == "dispatched"
    without_writer = Repository(clean, policy)
    for ev in call_events("not-stored-yet"):
        writer.call_event(ev)
    assert await without_writer.get_call("not-stored-yet") is None  # what catch-up is for


async def test_a_full_batch_read_and_stored_in_slices_keeps_every_event_once(
    make_writer: WriterFactory, clean: AsyncEngine
):
    """A batch of 200 lines is decoded and inserted in slices (the loop takes in calls between
    them): every event is stored, once, and every call's row is made from all of its events."""
    settings = DatabaseSettings(flush_interval=0.02, store_interval=30, retry_interval=0.1,
                                batch_size=200)
    writer = make_writer(settings=settings)
    await _started_and_settled(writer)
    calls = [call_events(f"slice-{n}", operator=f"op{n % 8 + 1}") for n in range(40)]
    evs = [ev for call in calls for ev in call]
    assert len(evs) >= settings.batch_size > 3 * max(writer_module.DECODE_SLICE,
                                                     apply_module.INSERT_SLICE)
    for ev in evs:
        writer.call_event(ev)
    assert await writer.flush(30)
    assert await _count(clean, "SELECT count(*) FROM call_events WHERE call_id LIKE 'slice-%'"
                        ) == len(evs)
    for n, call in enumerate(calls):
        row = await _call_row(clean, f"slice-{n}")
        assert (row["operator"], row["disposition"]) == (f"op{n % 8 + 1}", "genuine"), row
        assert row["ended_at"] == call[-1].at
