"""Every connection to PostgreSQL has a statement timeout.

The server cancels a statement after ``statement_timeout`` (SQLSTATE 57014), and asyncpg gives
up on its own ``command_timeout`` a little later, for a server that does not answer at all. So
a hung database never stalls the API, the blocklist reload or the records writer.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine

QUERY_TIMEOUT = 10.0  # tools without settings (the load test's reader, the schema revision)
MIGRATION_TIMEOUT = 600.0  # a migration may rewrite a large table: bounded, but generously
CLIENT_GRACE = 2.0  # seconds the client waits past the server's own timeout
CONNECT_TIMEOUT = 5.0


def connect_args(
    statement_timeout: float, connect_timeout: float = CONNECT_TIMEOUT
) -> dict[str, Any]:
    """asyncpg connect arguments for create_async_engine(..., connect_args=...)."""
    return {
        "timeout": connect_timeout,
        "command_timeout": statement_timeout + CLIENT_GRACE,
        "server_settings": {"statement_timeout": str(max(1, round(statement_timeout * 1000)))},
    }


# A pooled connection that was used within this many seconds is taken without a round trip.
PING_AFTER_IDLE = 10.0
_USED = "siaga112_used_at"


def ping_when_idle(engine: AsyncEngine, after: float = PING_AFTER_IDLE) -> AsyncEngine:
    """Check each pooled connection as it is taken, cheaply.

    SQLAlchemy's pool_pre_ping costs three round trips (begin, a query, rollback) on every
    checkout: 0.78 against 0.52 ms of CPU per one-statement transaction here, and the records
    writer and the desk's store take a connection several times a second. Here a
    connection is given up when asyncpg already saw it closed (PostgreSQL restarted or went
    away: free, no round trip), and pinged only when it sat unused for `after` seconds (a
    peer gone silently). A connection that fails anyway fails its statement: SQLAlchemy
    invalidates the pool, the writer keeps the records in its journal and tries again.
    """

    def connected(dbapi_conn: Any, record: Any) -> None:
        record.info[_USED] = time.monotonic()

    def taken(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        now = time.monotonic()
        idle = now - record.info.get(_USED, 0.0)
        record.info[_USED] = now
        raw = getattr(dbapi_conn, "_connection", None)  # asyncpg's Connection, under the adapter
        if raw is not None and raw.is_closed():
            raise InvalidatePoolError("the connection was closed")
        if idle > after:
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:
                raise InvalidatePoolError(f"ping failed: {exc!r}"[:200]) from exc

    event.listen(engine.sync_engine, "connect", connected)
    event.listen(engine.sync_engine, "checkout", taken)
    return engine
