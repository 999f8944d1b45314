"""Blocklist changes reach the running daemon at once: PostgreSQL LISTEN/NOTIFY.

Every change of the blocklist (the CLI, the API, the prank policy, a block's expiry) sends
``NOTIFY siaga112_blocklist`` in the transaction that makes it (``records.policy``), so the
notification leaves with the commit and never for a change rolled back. The daemon listens on a
connection of its own (not the pool's: a pooled connection goes back to the pool and stops
hearing) and calls ``on_change`` for each notification; screening then reloads.

The connection may go away (PostgreSQL restarted, the network): the listener reconnects with
backoff, and calls ``on_change`` on every (re)connect, for the changes it could not hear while
away. A connection that dies silently is found by a ``SELECT 1`` every ``keepalive`` seconds.
Screening's periodic reload stays as the safety net.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import make_url

log = structlog.get_logger(__name__)

CHANNEL = "siaga112_blocklist"


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL (``postgresql+asyncpg://...``) as a libpq DSN for asyncpg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class BlocklistListener:
    def __init__(
        self,
        url: str,
        on_change: Callable[[], None],
        *,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        keepalive: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._on_change = on_change
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self.listening = False
        self._listened = False
        self.notifications = 0

    async def run(self) -> None:
        """Listen until cancelled; never gives up on the database."""
        backoff = self._backoff_initial
        while True:
            self._listened = False
            try:
                await self._listen_once()
                error = "connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away, or anything else: try again
                error = repr(exc)[:200]
            if self._listened:  # it had listened: a fresh loss, start the backoff again
                backoff = self._backoff_initial
            log.warning("blocklist_listen_lost" if self._listened else "blocklist_listen_failed",
                        error=error, retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    async def _listen_once(self) -> None:
        """Connect, LISTEN, and return when the connection is lost (raises if it fails)."""
        conn = await asyncpg.connect(
            self._dsn, timeout=self._connect_timeout,
            server_settings={"application_name": "siaga112-blocklist-listen"},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._notified)
            self.listening = self._listened = True
            log.info("blocklist_listening", channel=CHANNEL)
            self._changed()  # what changed while nobody listened
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self._keepalive)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=self._keepalive)
        finally:
            self.listening = False
            if not conn.is_closed():
                conn.terminate()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        log.info("blocklist_notified", number=payload or None)
        self._changed()

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("blocklist_change_callback_failed")
