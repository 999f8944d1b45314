"""Which of two (or more) daemons handles calls: leadership on PostgreSQL (docs/cluster.md).

Exactly one daemon is active; the others stand by, connected to nothing but PostgreSQL and
their own API. Two things make the active one, and both must hold for a standby to take over:

- a session-level advisory lock (``pg_try_advisory_lock``) on the daemon's own connection.
  PostgreSQL releases it when that session dies (the daemon killed, its host gone), never while
  the daemon lives and its connection stands, however slow the daemon is;
- the row ``ha_leader``: the holder's name, the epoch of its leadership and a heartbeat counter
  it raises every ``heartbeat_interval``. A standby takes over only when the counter stood
  still for a whole ``lease`` that the standby watched without losing the database in between
  (``LeaseWatch``, on the standby's own monotonic clock: no two hosts' clocks are compared).

So, with PostgreSQL unreachable: the active goes on serving calls (it cannot beat, and nobody
can take its place); standbys cannot watch, so no lease runs out. When PostgreSQL is back the
active has a whole lease to beat again before anyone may take over, and it takes its lock back.
The active steps down the moment its heartbeat finds another holder or epoch in the row (someone
took over while it could not reach the database, or was stalled): it stops touching calls at once
and leaves them to the new leader's resync. A graceful stop releases the row (holder NULL), so a
standby takes over at its next look instead of after a lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg
import structlog

from siaga112.records.listen import asyncpg_dsn
from siaga112.settings import HaSettings

log = structlog.get_logger(__name__)

# pg_try_advisory_lock's key: "SIAGA112" in ASCII, one for every daemon of a centre's database.
LOCK_KEY = int.from_bytes(b"SIAGA112", "big") & 0x7FFF_FFFF_FFFF_FFFF
STANDBY_POLL = 0.25  # seconds between a standby's looks at the row
CONNECT_TIMEOUT = 2.0
QUERY_TIMEOUT = 2.0
BACKOFF_MAX = 1.0


class Role(StrEnum):
    STANDBY = "standby"
    ACTIVE = "active"


@dataclass
class LeaseWatch:
    """The standby's view of the active's heartbeat. The lease runs from the moment the standby
    first saw the current (holder, beat), and only while it keeps watching: losing the database
    starts it again (``lost_sight``)."""

    lease: float
    _seen: tuple[str | None, int] | None = field(default=None, repr=False)
    _since: float = 0.0

    def expired(self, holder: str | None, beat: int, now: float) -> bool:
        """Nobody leads, or the heartbeat stood still for a whole watched lease."""
        if holder is None:
            return True
        if self._seen != (holder, beat):
            self._seen = (holder, beat)
            self._since = now
            return False
        return now - self._since >= self.lease

    def lost_sight(self) -> None:
        self._seen = None


Callback = Callable[[], Awaitable[None]]


class Leadership:
    """The leadership loop of one daemon. ``on_active`` is awaited when it becomes the leader;
    ``on_lost`` when, being the leader, it learns that another daemon leads."""

    def __init__(self, db_url: str, settings: HaSettings, on_active: Callback,
                 on_lost: Callback,
                 connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None) -> None:
        self._dsn = asyncpg_dsn(db_url)
        self._settings = settings
        self.node = settings.node
        self._on_active = on_active
        self._on_lost = on_lost
        self._connect = connect or self._connect_pg
        self.role = Role.STANDBY
        self.epoch: int | None = None
        self.database = False  # the leadership connection stands
        self.since: float | None = None  # monotonic time of the last change of role
        # The node that leads as this daemon last saw the row (itself while it leads); None
        # before its first look or when nobody held the row (the API's standby refusal names it).
        self.leader: str | None = None
        self._watch = LeaseWatch(settings.lease)
        self._locked = False
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def _connect_pg(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn, timeout=CONNECT_TIMEOUT, command_timeout=QUERY_TIMEOUT,
            server_settings={"application_name": f"siaga112-leadership-{self.node}"},
        )

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled. Never gives up on the database; never steps down for its absence."""
        backoff = 0.1
        while True:
            try:
                self._conn = await self._connect()
                self.database = True
                backoff = 0.1
                log.info("leadership_connected", node=self.node, role=self.role.value)
                await self._session(self._conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: keep the role we have
                if self.database:
                    log.warning("leadership_database_lost", node=self.node,
                                role=self.role.value, error=repr(exc)[:200])
            finally:
                self.database = False
                self._locked = False  # a lock lives and dies with its session
                self._watch.lost_sight()
                await self._close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self, conn: asyncpg.Connection) -> None:
        while True:
            if self.role is Role.ACTIVE:
                await self._beat(conn)
                await asyncio.sleep(self._settings.heartbeat_interval)
            else:
                await self._look(conn)
                await asyncio.sleep(STANDBY_POLL)

    async def _beat(self, conn: asyncpg.Connection) -> None:
        if not self._locked:
            self._locked = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY))
            if self._locked:
                log.info("leadership_lock_held", node=self.node)
        epoch = await conn.fetchval(
            "UPDATE ha_leader SET beat = beat + 1, heartbeat_at = now() "
            "WHERE id = 1 AND holder = $1 AND epoch = $2 RETURNING epoch",
            self.node, self.epoch,
        )
        if epoch is None:
            row = await conn.fetchrow("SELECT holder, epoch FROM ha_leader WHERE id = 1")
            self.leader = row["holder"] if row else None
            log.error("leadership_lost", node=self.node, epoch=self.epoch,
                      holder=row["holder"] if row else None,
                      holder_epoch=row["epoch"] if row else None)
            await self._unlock(conn)
            self._set_role(Role.STANDBY)
            self.epoch = None
            await self._on_lost()

    async def _look(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow("SELECT holder, beat FROM ha_leader WHERE id = 1")
        if row is None:  # a database migrated by hand, row deleted: make it again
            await conn.execute("INSERT INTO ha_leader (id) VALUES (1) ON CONFLICT DO NOTHING")
            return
        holder, beat = row["holder"], int(row["beat"])
        self.leader = holder
        if not self._watch.expired(holder, beat, time.monotonic()):
            return
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            return  # the leader's session lives (a slow leader is still the leader)
        self._locked = True
        # Take over only if the row is still what was watched (another standby may have won).
        epoch = await conn.fetchval(
            "UPDATE ha_leader SET holder = $1, epoch = epoch + 1, beat = beat + 1, "
            "since = now(), heartbeat_at = now() "
            "WHERE id = 1 AND holder IS NOT DISTINCT FROM $2 AND beat = $3 RETURNING epoch",
            self.node, holder, beat,
        )
        if epoch is None:
            await self._unlock(conn)
            self._watch.lost_sight()
            return
        self.epoch = int(epoch)
        self.leader = self.node
        self._set_role(Role.ACTIVE)
        log.info("leadership_taken", node=self.node, epoch=self.epoch, previous=holder)
        await self._on_active()

    # -- stopping --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="leadership")

    async def stop(self, release: bool) -> None:
        """Stop the loop (its session ends, and with it the lock). With release, being the
        leader: the row says nobody leads, so a standby takes over at its next look rather than
        after a lease. Best effort: with the database away, the lease does it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not release or self.role is not Role.ACTIVE:
            return
        try:
            conn = await self._connect()
            try:
                await conn.execute(
                    "UPDATE ha_leader SET holder = NULL "
                    "WHERE id = 1 AND holder = $1 AND epoch = $2", self.node, self.epoch)
            finally:
                await conn.close(timeout=QUERY_TIMEOUT)
            log.info("leadership_released", node=self.node, epoch=self.epoch)
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            log.warning("leadership_release_failed", node=self.node, error=repr(exc)[:200])
        self._set_role(Role.STANDBY)

    async def _unlock(self, conn: asyncpg.Connection) -> None:
        if self._locked:
            await conn.fetchval("SELECT pg_advisory_unlock($1)", LOCK_KEY)
            self._locked = False

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    def _set_role(self, role: Role) -> None:
        self.role = role
        self.since = time.monotonic()
