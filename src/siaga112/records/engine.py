"""Every connection to PostgreSQL has a statement timeout.

The server cancels a statement after ``statement_timeout`` (SQLSTATE 57014), and asyncpg gives
up on its own ``command_timeout`` a little later, for a server that does not answer at all. So
a hung database never stalls the API, the blocklist reload or the records writer.
"""

from __future__ import annotations

from typing import Any

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
