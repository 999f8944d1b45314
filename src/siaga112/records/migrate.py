"""Schema migrations (alembic; the scripts are the repository's ``migrations/``, shipped in
the package as ``siaga112._migrations``) run from Python:
``siaga112 migrate`` calls ``upgrade(url)``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.records.engine import MIGRATION_TIMEOUT, QUERY_TIMEOUT, connect_args

log = structlog.get_logger(__name__)


def migrations_dir() -> Path:
    """The alembic scripts, shipped inside the distribution as the package
    ``siaga112._migrations`` (the repository's ``migrations/`` folder, mapped in pyproject.toml):
    found the same way from a wheel and from an editable install."""
    try:
        found = resources.files("siaga112._migrations")
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "siaga112's migrations are not installed with the package (siaga112._migrations); "
            "reinstall siaga112 (pip install . or pip install -e .)") from None
    if not isinstance(found, Path):  # a zipped install: alembic needs a directory
        raise FileNotFoundError(f"siaga112._migrations is not a directory on disk: {found}")
    return found


def alembic_config() -> Config:
    ini = migrations_dir() / "alembic.ini"
    if not ini.is_file():
        raise FileNotFoundError(f"alembic.ini not found at {ini} (installed without them?)")
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


async def upgrade_async(url: str, rev: str = "head") -> None:
    await _run(url, lambda cfg: command.upgrade(cfg, rev))
    log.info("schema_upgraded", rev=rev)


async def downgrade_async(url: str, rev: str) -> None:
    await _run(url, lambda cfg: command.downgrade(cfg, rev))
    log.info("schema_downgraded", rev=rev)


def upgrade(url: str, rev: str = "head") -> None:
    """Bring the schema at url up to rev (default the newest). Not inside a running loop:
    there, await upgrade_async."""
    asyncio.run(upgrade_async(url, rev))


def downgrade(url: str, rev: str) -> None:
    """Take the schema down to rev ("base" drops every table)."""
    asyncio.run(downgrade_async(url, rev))


async def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_async_engine(url, connect_args=connect_args(QUERY_TIMEOUT))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def _run(url: str, action: Callable[[Config], None]) -> None:
    engine = create_async_engine(url, connect_args=connect_args(MIGRATION_TIMEOUT))
    try:
        async with engine.begin() as conn:

            def in_sync(sync_conn: Connection) -> None:
                cfg = alembic_config()
                cfg.attributes["connection"] = sync_conn
                action(cfg)

            await conn.run_sync(in_sync)
    finally:
        await engine.dispose()
