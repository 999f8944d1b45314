from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.records.migrate import current_revision, downgrade_async, upgrade_async
from siaga112.records.tables import metadata

from .conftest import create_database


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_downgrade_to_base_and_up_again(pg_server: str) -> None:
    url = await create_database("t_migrations_cycle")
    wanted = {t.name for t in metadata.sorted_tables}

    await upgrade_async(url)
    assert wanted <= await _tables(url)
    assert await current_revision(url) == "0001"

    await downgrade_async(url, "base")
    assert await _tables(url) == {"alembic_version"}
    assert await current_revision(url) is None

    await upgrade_async(url)
    assert wanted <= await _tables(url)


async def test_upgrade_twice_is_a_no_op(pg_server: str) -> None:
    url = await create_database("t_migrations_twice")
    await upgrade_async(url)
    await upgrade_async(url)
    assert await current_revision(url) == "0001"
