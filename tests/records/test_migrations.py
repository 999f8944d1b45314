from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.records.migrate import (
    alembic_config,
    current_revision,
    downgrade_async,
    upgrade_async,
)
from siaga112.records.tables import metadata

from .conftest import create_database

# The newest revision (one head: each new migration chains onto the last).
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _drift(url: str) -> list[object]:
    """What differs between the migrated schema and tables.py (alembic autogenerate)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata)
            )
    finally:
        await engine.dispose()


def _added_tables(drift: list[object]) -> set[str]:
    """The tables a drift report says the schema lacks (what later migrations add)."""
    return {d[1].name for d in drift if isinstance(d, tuple) and d[0] == "add_table"}


async def test_upgrade_from_empty_downgrade_to_base_and_up_again(pg_server: str) -> None:
    url = await create_database("t_migrations_cycle")
    wanted = {t.name for t in metadata.sorted_tables}

    await upgrade_async(url)
    assert wanted <= await _tables(url)
    assert await current_revision(url) == HEAD
    assert await _drift(url) == []  # the migrations build exactly what tables.py says

    await downgrade_async(url, "base")
    assert await _tables(url) == {"alembic_version"}
    assert await current_revision(url) is None

    await upgrade_async(url)
    assert wanted <= await _tables(url)


async def test_complaints_come_and_go_with_0002(pg_server: str) -> None:
    url = await create_database("t_migrations_0002")
    await upgrade_async(url, "0001")
    assert "complaints" not in await _tables(url)
    assert await _drift(url)  # the comparison sees what 0002 adds

    await upgrade_async(url, "0002")
    assert "complaints" in await _tables(url)
    # what 0003 adds is still missing, complaints no longer
    added = _added_tables(await _drift(url))
    assert "agencies" in added and "complaints" not in added

    await downgrade_async(url, "0001")
    assert "complaints" not in await _tables(url)
    assert await current_revision(url) == "0001"
    assert "calls" in await _tables(url)


async def test_agencies_come_and_go_with_0003(pg_server: str) -> None:
    url = await create_database("t_migrations_0003")
    await upgrade_async(url, "0003")
    assert "agencies" in await _tables(url)
    assert "agencies" not in _added_tables(await _drift(url))

    await downgrade_async(url, "0002")
    assert "agencies" not in await _tables(url)
    assert "complaints" in await _tables(url)


async def test_upgrade_twice_is_a_no_op(pg_server: str) -> None:
    url = await create_database("t_migrations_twice")
    await upgrade_async(url)
    await upgrade_async(url)
    assert await current_revision(url) == HEAD


async def test_callbacks_and_call_location_come_and_go_with_0006(pg_server: str) -> None:
    url = await create_database("t_migrations_0006")
    await upgrade_async(url, "0005_note")
    assert "callbacks" not in await _tables(url)
    drift = await _drift(url)
    assert _added_tables(drift) == {"callbacks"}
    added_columns = {d[3].name for d in drift if isinstance(d, tuple) and d[0] == "add_column"}
    assert added_columns == {"location", "callback_of", "operators"}  # the last is 0008's

    await upgrade_async(url, "0006_callbacks")
    assert "callbacks" in await _tables(url)
    await downgrade_async(url, "0005_note")
    assert "callbacks" not in await _tables(url)
    assert await current_revision(url) == "0005_note"


async def test_call_operators_come_with_0008_filled_from_the_stored_events(
        pg_server: str) -> None:
    """0008 adds calls.operators and fills it for the calls stored before it: every
    CONNECTED's operator in order; a call never connected gets none."""
    from sqlalchemy import text

    url = await create_database("t_migrations_0008")
    await upgrade_async(url, "0007_callbacks_state")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO calls (call_id, operator) VALUES ('c1', 'op6'), ('c2', NULL)"))
            await conn.execute(text(
                """INSERT INTO call_events (event_id, call_id, seq, type, at, data) VALUES
                   (gen_random_uuid(), 'c1', 9, 'connected', now(), '{"operator": "op1"}'),
                   (gen_random_uuid(), 'c1', 3, 'connected', now() - interval '1 minute',
                    '{"operator": "op6"}'),
                   (gen_random_uuid(), 'c1', 5, 'operator_left', now() - interval '30 s',
                    '{"operator": "op6"}'),
                   (gen_random_uuid(), 'c2', 1, 'arrived', now(), '{}')"""))
        await upgrade_async(url, "0008_operators")
        async with engine.connect() as conn:
            rows = dict((await conn.execute(
                text("SELECT call_id, operators FROM calls ORDER BY call_id"))).all())
        assert rows == {"c1": ["op6", "op1"], "c2": []}
        assert await _drift(url) == []
        await downgrade_async(url, "0007_callbacks_state")
        assert await current_revision(url) == "0007_callbacks_state"
    finally:
        await engine.dispose()
