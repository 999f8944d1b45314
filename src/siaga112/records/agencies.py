"""The agency directory in the database: settings are the source, the ``agencies`` table the
copy that reports and other systems read. Synced once at daemon start, in the background: a
database that is down delays the copy, never a call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.agencies import Agency
from siaga112.records.tables import agencies

log = structlog.get_logger(__name__)


async def sync_agencies(engine: AsyncEngine, directory: Sequence[Agency]) -> int:
    """Upsert every agency of `directory` as active and mark the others inactive (kept, as
    old dispatches name them). Returns how many rows it wrote."""
    rows = [
        {"code": a.code, "name": a.name, "scope": a.scope.value, "lines": list(a.lines),
         "categories": list(a.categories), "active": True}
        for a in directory
    ]
    async with engine.begin() as conn:
        if rows:
            stmt = insert(agencies).values(rows)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[agencies.c.code],
                set_={"name": stmt.excluded.name, "scope": stmt.excluded.scope,
                      "lines": stmt.excluded.lines, "categories": stmt.excluded.categories,
                      "active": True, "updated_at": func.now()},
            ))
        await conn.execute(
            update(agencies)
            .where(agencies.c.code.not_in([a.code for a in directory]), agencies.c.active)
            .values(active=False, updated_at=func.now())
        )
    return len(rows)


async def keep_synced(engine: AsyncEngine, directory: Sequence[Agency],
                      retry_interval: float = 5.0) -> None:
    """Sync once, retrying while the database is unreachable."""
    while True:
        try:
            n = await sync_agencies(engine, directory)
        except Exception as exc:  # the database may be down: the calls go on without it
            log.info("agency_directory_sync_failed", error=str(exc)[:200],
                     retry_in=retry_interval)
            await asyncio.sleep(retry_interval)
            continue
        log.info("agency_directory_synced", agencies=n)
        return
