"""The records writer's transaction on asyncpg itself.

Every stored batch is one transaction of four to eight statements (records/apply.py), several
times a second under load and about once a call at a quiet hour. Run through SQLAlchemy's
asyncio layer, each statement also paid for its greenlet switch, the cursor adapter and the
result's wrapping: 2.9 against 1.9 ms of the daemon's CPU per batch of four calls' path events
(docs/load-testing.md, twenty-seventh round). So the writer takes a pooled connection from
the same engine (its pool, its statement timeout, its checkout test: records/engine.py) and
runs the same SQLAlchemy statements, compiled once, on the asyncpg connection under it.

A connection lost in the middle is raised as ``ConnectionError`` (an ``OSError``), which the
writer's ``classify`` (records/faults.py) takes as the database being away, whatever asyncpg
called it; the pool's checkout test drops such a connection before it is used again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ClauseElement

_DIALECT = asyncpg_dialect()
_compiled: dict[ClauseElement, tuple[str, tuple[str, ...]]] = {}


def compiled(stmt: ClauseElement) -> tuple[str, tuple[str, ...]]:
    """stmt as asyncpg's SQL ($1, $2 ... with their casts) and the names of its parameters in
    that order; compiled once per statement (the records' statements are module constants)."""
    done = _compiled.get(stmt)
    if done is None:
        c = stmt.compile(dialect=_DIALECT)
        done = _compiled[stmt] = (str(c), tuple(getattr(c, "positiontup", None) or ()))
    return done


class Tx:
    """An asyncpg connection inside a transaction, taking SQLAlchemy statements and their
    parameters by name, as AsyncConnection.execute does."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @staticmethod
    def _args(stmt: ClauseElement, params: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        sql, names = compiled(stmt)
        values = params or {}
        return sql, [values[name] for name in names]

    async def execute(self, stmt: ClauseElement, params: Mapping[str, Any] | None = None) -> None:
        sql, args = self._args(stmt, params)
        await self._conn.execute(sql, *args)

    async def fetch(self, stmt: ClauseElement,
                    params: Mapping[str, Any] | None = None) -> list[asyncpg.Record]:
        sql, args = self._args(stmt, params)
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, stmt: ClauseElement,
                       params: Mapping[str, Any] | None = None) -> asyncpg.Record | None:
        sql, args = self._args(stmt, params)
        return await self._conn.fetchrow(sql, *args)


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Tx]:
    """A pooled connection of engine in a transaction: committed when the block ends, rolled
    back when it raises."""
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None  # a checked-out connection always has its driver's
        try:
            async with raw.transaction():
                yield Tx(raw)
        except Exception as exc:
            if raw.is_closed():
                raise ConnectionError(f"the database connection was lost: {exc!r}"[:300]) from exc
            raise
