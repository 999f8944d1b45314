"""Prank and ghost policy, and the blocklist store.

After each stored batch that marks calls prank or ghost, in the same transaction, the
caller's prank+ghost calls in the window are counted: more than ``prank_block_threshold``
blocks the number for ``block_hours`` (unless it is blocked already), more than
``referral_threshold`` refers it to the ministry. Every change is audited in ``block_audit``
and announced with ``NOTIFY siaga112_blocklist`` (payload: the number) in its own transaction,
so that every running daemon's screening hears it at the commit (``records.listen``), whoever
made it: the CLI, the API or the policy. ``on_blocklist_changed`` is also called after the
commit, for this process's own screening.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from siaga112.model import BlockEntry
from siaga112.records.driver import Tx
from siaga112.records.listen import CHANNEL
from siaga112.settings import PolicySettings

log = structlog.get_logger(__name__)

POLICY = "policy"
_E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")

_COUNT = text(
    """
    SELECT count(*) AS n,
           min(coalesce(arrived_at, ended_at, updated_at)) AS first_at,
           max(coalesce(arrived_at, ended_at, updated_at)) AS last_at
    FROM calls
    WHERE caller = :number AND disposition IN ('prank', 'ghost')
      AND coalesce(arrived_at, ended_at, updated_at) >= now() - make_interval(secs => :window)
    """
)
_UPSERT_BLOCK = """
    INSERT INTO blocklist AS b (number, blocked_until, reason, by, created_at, expired_at)
    VALUES (:number, now() + make_interval(secs => :secs), :reason, :by, now(), NULL)
    ON CONFLICT (number) DO UPDATE
      SET blocked_until = excluded.blocked_until, reason = excluded.reason, by = excluded.by,
          created_at = excluded.created_at, expired_at = NULL
"""
_BLOCK_UNLESS_ACTIVE = text(
    _UPSERT_BLOCK + " WHERE b.expired_at IS NOT NULL OR b.blocked_until <= now() RETURNING number"
)
_BLOCK_ALWAYS = text(_UPSERT_BLOCK + " RETURNING number, blocked_until, reason, by")
_REFER = text(
    """
    INSERT INTO referrals AS r (number, count, first_at, last_at)
    VALUES (:number, :count, :first_at, :last_at)
    ON CONFLICT (number) DO UPDATE
      SET count = greatest(r.count, excluded.count), last_at = greatest(r.last_at, excluded.last_at)
    RETURNING (xmax = 0) AS inserted
    """
)
_AUDIT = text(
    "INSERT INTO block_audit (number, action, by, reason) VALUES (:number, :action, :by, :reason)"
)
_EXPIRE = text(
    """
    UPDATE blocklist SET expired_at = now()
    WHERE expired_at IS NULL AND blocked_until IS NOT NULL AND blocked_until <= now()
    RETURNING number
    """
)
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :number)")
_UNBLOCK = text(
    "UPDATE blocklist SET expired_at = now() WHERE number = :number AND expired_at IS NULL "
    "RETURNING number"
)


def check_e164(number: str) -> str:
    """The number if it is E.164 (+ and 6 to 15 digits); ValueError naming it otherwise."""
    if not _E164.match(number):
        raise ValueError(f"not an E.164 number (like +6281234567890): {number!r}")
    return number


class BlockPolicy:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: PolicySettings,
        on_blocklist_changed: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._on_changed = on_blocklist_changed

    async def evaluate(self, tx: Tx, callers: Iterable[str]) -> bool:
        """Apply the thresholds to callers inside the records writer's transaction (tx). True
        when the blocklist changed: call notify() after the commit."""
        changed = False
        s = self._settings
        for number in sorted(set(callers)):
            row = await tx.fetchrow(_COUNT, {"number": number, "window": s.window_hours * 3600})
            assert row is not None  # an aggregate without GROUP BY: always one row
            n = row["n"]
            if n > s.prank_block_threshold:
                reason = f"{n} prank/ghost calls in {s.window_hours:g} h"
                blocked = await tx.fetchrow(
                    _BLOCK_UNLESS_ACTIVE,
                    {
                        "number": number,
                        "secs": s.block_hours * 3600,
                        "reason": reason,
                        "by": POLICY,
                    },
                )
                if blocked is not None:
                    await self._audit(tx, number, "block", POLICY, reason)
                    await self._notify_db(tx, number)
                    log.warning("number_blocked", number=number, calls=n, hours=s.block_hours)
                    changed = True
            if n > s.referral_threshold:
                params = {
                    "number": number,
                    "count": n,
                    "first_at": row["first_at"],
                    "last_at": row["last_at"],
                }
                referred = await tx.fetchrow(_REFER, params)
                if referred is not None and referred["inserted"]:
                    reason = f"{n} prank/ghost calls in {s.window_hours:g} h"
                    await self._audit(tx, number, "refer", POLICY, reason)
                    log.warning("number_referred", number=number, calls=n)
        return changed

    def notify(self) -> None:
        """Tell screening the blocklist changed; its failure is logged, never raised."""
        if self._on_changed is None:
            return
        try:
            self._on_changed()
        except Exception:
            log.exception("blocklist_callback_failed")

    async def expire_due(self) -> list[str]:
        """Mark blocks whose time is up as expired (audited). Returns the numbers."""
        async with self._engine.begin() as conn:
            numbers = list((await conn.execute(_EXPIRE)).scalars())
            for number in numbers:
                await self._audit(conn, number, "expire", POLICY, "block time over")
                await self._notify_db(conn, number)
        if numbers:
            log.info("blocks_expired", numbers=numbers)
            self.notify()
        return numbers

    async def run_expiry(self, interval: float = 30.0) -> None:
        """Expire due blocks every interval seconds until cancelled; database faults are logged."""
        while True:
            try:
                await self.expire_due()
            except Exception as exc:
                log.warning("block_expiry_failed", error=str(exc))
            await asyncio.sleep(interval)

    async def block(self, number: str, hours: float | None, reason: str, by: str) -> BlockEntry:
        """Block number for hours (None: until unblocked), replacing any block it has."""
        check_e164(number)
        if hours is not None and hours <= 0:
            raise ValueError(f"block hours must be positive, got {hours}")
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    _BLOCK_ALWAYS,
                    {
                        "number": number,
                        "secs": None if hours is None else hours * 3600,
                        "reason": reason,
                        "by": by,
                    },
                )
            ).one()
            await self._audit(conn, number, "manual_block", by, reason)
            await self._notify_db(conn, number)
        log.info("number_blocked_manually", number=number, hours=hours, by=by)
        self.notify()
        return BlockEntry(number=row.number, blocked_until=row.blocked_until, reason=reason, by=by)

    async def unblock(self, number: str, reason: str, by: str) -> bool:
        """End number's block. False when it had none."""
        async with self._engine.begin() as conn:
            ended = (await conn.execute(_UNBLOCK, {"number": number})).first() is not None
            if ended:
                await self._audit(conn, number, "unblock", by, reason)
                await self._notify_db(conn, number)
        if ended:
            log.info("number_unblocked", number=number, by=by)
            self.notify()
        return ended

    @staticmethod
    async def _notify_db(conn: AsyncConnection | Tx, number: str) -> None:
        """Every daemon's listener hears this when (and only if) the transaction commits."""
        await conn.execute(_NOTIFY, {"number": number})

    @staticmethod
    async def _audit(
        conn: AsyncConnection | Tx, number: str, action: str, by: str, reason: str | None
    ) -> None:
        await conn.execute(_AUDIT, {"number": number, "action": action, "by": by, "reason": reason})
