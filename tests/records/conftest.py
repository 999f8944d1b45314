"""Records tests run against the project's dev PostgreSQL (var/pg, port 5432); each test
module gets a fresh database migrated to head, and each test starts from empty tables."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from siaga112.records.engine import ping_when_idle
from siaga112.records.migrate import upgrade_async
from siaga112.records.policy import BlockPolicy
from siaga112.records.tables import metadata
from siaga112.settings import PolicySettings
from siaga112_testkit.devstack.postgres import (
    HOST,
    ROLE,
    database_url,
    ensure_postgres,
    role_password,
    start_postgres,
    stop_postgres,
)

STATE_DIR = Path(__file__).resolve().parents[2] / "var"
PORT = 5432


@contextlib.asynccontextmanager
async def postgres_stopped(pg_state_dir: Path) -> AsyncIterator[None]:
    """PostgreSQL down for the block's time, started again whatever the block did."""
    await asyncio.to_thread(stop_postgres, pg_state_dir)
    try:
        yield
    finally:
        await asyncio.to_thread(start_postgres, pg_state_dir, PORT)


@pytest.fixture(scope="session")
def pg_state_dir() -> Path:
    return STATE_DIR


@pytest.fixture(scope="session")
def pg_server(pg_state_dir: Path) -> Iterator[str]:
    """The dev cluster (left running after the session: it is cheap and shared)."""
    yield ensure_postgres(pg_state_dir, PORT)


async def _admin() -> asyncpg.Connection:
    # The project's role (CREATEDB, owner of the test databases): the cluster admits no other.
    return await asyncpg.connect(host=HOST, port=PORT, user=ROLE,
                                 password=role_password(STATE_DIR), database="postgres")


async def create_database(name: str) -> str:
    """A fresh, empty database owned by siaga112; returns its URL."""
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" OWNER siaga112')
    finally:
        await conn.close()
    return database_url(PORT, name, role_password(STATE_DIR))


@pytest.fixture(scope="module")
async def db_url(pg_server: str, request: pytest.FixtureRequest) -> str:
    name = "t_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    url = await create_database(name)
    await upgrade_async(url)
    return url


@pytest.fixture(scope="module")
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = ping_when_idle(create_async_engine(db_url))  # the daemon's pool checks
    yield eng
    await eng.dispose()


@pytest.fixture
async def clean(engine: AsyncEngine) -> AsyncEngine:
    """Empty tables before the test; returns the engine."""
    await clean_tables(engine)
    return engine


async def clean_tables(engine: AsyncEngine) -> None:
    """Empty every table (also within a test that runs several cases)."""
    names = ", ".join(t.name for t in metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))


class ChangeCounter:
    """Stands in for screening's reload hook."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1

    def __repr__(self) -> str:
        return f"ChangeCounter(calls={self.calls})"


@pytest.fixture
def changes() -> ChangeCounter:
    return ChangeCounter()


@pytest.fixture
def policy(clean: AsyncEngine, changes: ChangeCounter) -> BlockPolicy:
    return BlockPolicy(clean, PolicySettings(), on_blocklist_changed=changes)
