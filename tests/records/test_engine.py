"""The daemon's pool checks a connection as it is taken (records/engine.py), without
SQLAlchemy's pre-ping round trips: after PostgreSQL restarts, the next transaction gets a new
connection instead of failing on a dead one; a connection in use is not pinged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from siaga112.records.engine import ping_when_idle
from siaga112_testkit.devstack.postgres import start_postgres, stop_postgres

from .conftest import PORT


async def _one(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        return int((await conn.execute(text("select 1"))).scalar_one())


async def test_after_a_restart_the_next_transaction_gets_a_new_connection(
    db_url: str, pg_state_dir: Path
) -> None:
    engine = ping_when_idle(create_async_engine(db_url, pool_size=2, max_overflow=0))
    try:
        assert await asyncio.gather(_one(engine), _one(engine)) == [1, 1]  # two in the pool
        await asyncio.to_thread(stop_postgres, pg_state_dir)
        await asyncio.to_thread(start_postgres, pg_state_dir, PORT)
        await asyncio.sleep(0.2)  # the loop sees both connections closed
        assert [await _one(engine) for _ in range(3)] == [1, 1, 1]
    finally:
        await engine.dispose()


async def test_a_connection_in_use_is_not_pinged_and_an_idle_one_is(db_url: str) -> None:
    engine = ping_when_idle(create_async_engine(db_url, pool_size=1, max_overflow=0),
                            after=0.3)
    pings: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda conn, cursor, stmt, *a: pings.append(stmt))
    original = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings.append("ping")
        return original(dbapi_conn)

    engine.dialect.do_ping = counted  # type: ignore[method-assign, assignment]
    try:
        for _ in range(5):
            await _one(engine)
        assert pings.count("ping") == 0
        await asyncio.sleep(0.5)
        await _one(engine)
        assert pings.count("ping") == 1
    finally:
        await engine.dispose()
