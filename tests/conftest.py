"""Fixtures shared by every test. The integration fixtures bring the local stack up (real
Asterisk 22, PostgreSQL, Mosquitto: `siaga112-testkit stack up`, idempotent) and give each test its
own daemon, then clean up the calls, bridges and operator states the test made.

Tests keep to their own data: the database `siaga112_test` (never the operator's `siaga112`,
which `make run` shows), an MQTT prefix `test-<hex>/siaga112` per daemon, and, for any process a
test starts without settings of its own, SIAGA112_CONFIG pointing at var/siaga112-test.toml (the
Makefile exports the operator's var/siaga112.toml)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / "var"
OPERATORS = [f"op{n}" for n in range(1, 9)]


@dataclass(frozen=True)
class Stack:
    db_url: str
    recordings: Path
    fallback_journal: Path
    state_dir: Path


LOCK_FILE = "/tmp/siaga112-test-pbx.lock"
_lock: list[IO[str]] = []


def _needs_stack(item: pytest.Item) -> bool:
    path = Path(str(item.path))
    return path.parent.name not in ("unit", "fuzz") or "records" in path.name


def pytest_collection_finish(session: pytest.Session) -> None:
    """One test run at a time on the machine's one local stack: the PBX's addresses are fixed
    by the topology, so two runs would answer each other's calls, and some tests stop
    PostgreSQL or Mosquitto on purpose. A second run waits here for the first to end (before
    any test starts, so the wait is not counted in a test's timeout). `siaga112-testkit load-test`
    and `siaga112-testkit bench` take the same lock. Runs of pure unit tests need no lock."""
    if not any(_needs_stack(item) for item in session.items):
        return
    fh = open(LOCK_FILE, "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(fh, fcntl.LOCK_EX)
    _lock.append(fh)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    while _lock:
        fh = _lock.pop()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    from siaga112 import procs
    from siaga112_testkit.devstack import stack as devstack
    from siaga112_testkit.devstack.pbx import Pbx
    from siaga112_testkit.devstack.postgres import test_database_url

    pid = procs.read_pid(STATE / "siaga112.pid")
    if pid is not None:
        pytest.exit(f"a siaga112 daemon (pid {pid}, from `make up`) is connected to the test "
                    "PBX and would take the tests' calls: run `make down` first", returncode=3)
    devstack.up(REPO, STATE)
    pbx = Pbx(repo=REPO, state_dir=STATE)
    db_url = test_database_url(STATE, devstack.PG_PORT)
    # A CLI or daemon a test starts without settings of its own reads the test kit's file.
    before = os.environ.get("SIAGA112_CONFIG")
    os.environ["SIAGA112_CONFIG"] = str(STATE / devstack.TEST_SETTINGS)
    yield Stack(db_url=db_url,
                recordings=pbx.recordings,
                fallback_journal=pbx.fallback_journal,
                state_dir=STATE)
    if before is None:
        os.environ.pop("SIAGA112_CONFIG", None)
    else:
        os.environ["SIAGA112_CONFIG"] = before


def daemon_settings(stack: Stack, tmp_path: Path, **overrides: Any) -> Any:
    """Settings for a daemon under test: the local stack, short timers, its own MQTT prefix."""
    from siaga112.settings import Settings

    base: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "fallback_journal": stack.fallback_journal,
        "log_level": "debug",
        "ari": {"password": ari_settings().password},
        "database": {"url": stack.db_url, "flush_interval": 0.05, "retry_interval": 0.2},
        "recording": {"dir": stack.recordings},
        "mqtt": {"topic_prefix": f"test-{uuid.uuid4().hex[:8]}/siaga112"},
        # The test desk phones send no media unless a test makes them (desk_media_timeout: 0,
        # unwatched; test_desk_phone_lost.py watches them).
        "queue": {"ring_timeout": 4, "wrapup": 0, "announce_interval": 5,
                  "desk_media_timeout": 0},
        "silence": {"enabled": False},
        "api": {"tokens": [
            {"token": "admin-token", "role": "admin", "name": "test admin"},
            {"token": "operator-token", "role": "operator", "name": "test operator"},
            {"token": "supervisor-token", "role": "supervisor", "name": "test supervisor"},
        ]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return Settings(**base)


def ari_settings() -> Any:
    """The test PBX's ARI user: its password is generated by `siaga112-testkit stack up`."""
    from siaga112_testkit.devstack.stack import dev_ari_settings

    return dev_ari_settings(STATE)


async def _tests_database() -> Any:
    import asyncpg

    from siaga112.records.listen import asyncpg_dsn
    from siaga112_testkit.devstack import stack as devstack
    from siaga112_testkit.devstack.postgres import test_database_url

    return await asyncpg.connect(asyncpg_dsn(test_database_url(STATE, devstack.PG_PORT)))


async def set_choices(states: dict[str, str]) -> None:
    """Operators' chosen states in the tests' database (operator_store.py), where the desk
    phones' codes and the API leave them; no reason, idle since unknown."""
    conn = await _tests_database()
    try:
        await conn.executemany(
            "INSERT INTO operator_choices (operator, chosen, reason, idle_since, updated_at) "
            "VALUES ($1, $2, NULL, NULL, now()) ON CONFLICT (operator) DO UPDATE SET "
            "chosen = excluded.chosen, reason = NULL, idle_since = NULL, updated_at = now()",
            list(states.items()))
    finally:
        await conn.close()


async def stored_choice(operator: str) -> str | None:
    """What the tests' database says the operator chose."""
    conn = await _tests_database()
    try:
        return await conn.fetchval(
            "SELECT chosen FROM operator_choices WHERE operator = $1", operator)
    finally:
        await conn.close()


async def release_phones(ari_urls: Sequence[str] | None = None) -> None:
    """End every call on the PBX while the test's phones still run, so that each phone answers
    the BYE of its own call. A phone stopped first leaves the PBX retransmitting that BYE to
    its address for 32 s (RFC 3261's timer F), and the next test's desk phone on the same
    address took it for a call of its own: SIPp counts any request as a call, so a phone that
    takes one call (-m 1) had taken its call and no longer answered the daemon's ring (found
    with test_stranded.py run right after test_recall_supervision.py). ari_urls: the PBXs the
    phones called through (default the test PBX; the cluster's two nodes in its tests); one
    that is down has no call to end."""
    from siaga112.ari.client import AriClient, Unreachable
    from siaga112_testkit.loadtest.runner import hang_up_all

    settings = ari_settings()
    asked = 0
    for url in ari_urls or [settings.url]:
        try:
            async with AriClient(settings.model_copy(update={"url": url})) as ari:
                asked += await hang_up_all(ari, seconds=5.0, every=0.1)
        except Unreachable:
            continue
    if asked:
        await asyncio.sleep(0.3)  # the last BYEs answered before the phones stop


async def reset_pbx(logged_in: list[str]) -> None:
    """Hang up every channel, remove the calls' bridges once their channels are gone, set
    operators' chosen states.

    The holding bridges stay (emptied by the hang-ups), as in production, where nothing
    destroys it: two of three fresh-clone runs of the suite on 2026-11-30 were left, from
    test_caller_clock's sixth test on, with a PBX that answered `POST /bridges/siaga112-holding`
    with 409 "already exists" and `GET` of it with 404 while listing no bridge, so that no
    daemon could make its holding bridge again and every later test failed. The cause in
    Asterisk is not found; this reset was the only thing that destroyed that bridge, right
    before a new daemon made it again, so it no longer does."""
    from siaga112.ari.client import AriClient, AriError
    from siaga112.legs import is_holding
    from siaga112_testkit.loadtest.runner import hang_up_all

    async with AriClient(ari_settings()) as ari:
        await set_choices({op: "available" if op in logged_in else "logged_out"
                           for op in OPERATORS})
        await hang_up_all(ari, seconds=5.0, every=0.1)
        for b in await ari.bridges():
            if b.id.startswith("siaga112-") and not is_holding(b.id):
                try:
                    await ari.destroy_bridge(b.id)
                except AriError:
                    pass


DaemonFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def daemon_factory(stack: Stack, tmp_path: Path) -> AsyncIterator[DaemonFactory]:
    """make(logged_in=["op1"], **settings overrides) -> a started Daemon, resynced."""
    from siaga112.app import Daemon

    made: list[Daemon] = []

    async def make(logged_in: list[str] | None = None, reset: bool = True,
                   **overrides: Any) -> Daemon:
        if reset:
            await reset_pbx(logged_in if logged_in is not None else ["op1"])
        daemon = Daemon(daemon_settings(stack, tmp_path, **overrides))
        await daemon.start()
        made.append(daemon)
        await asyncio.wait_for(daemon.stasis.resynced.wait(), 10)
        return daemon

    yield make
    for daemon in made:
        await daemon.shutdown(grace=2)
    await reset_pbx(["op1"])


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """An aiohttp web.Application served on a free loopback port: its base URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def wait_for(predicate: Callable[[], Any], seconds: float = 10, what: str = "") -> Any:
    """Poll until predicate() is truthy (or an awaitable resolving truthy)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what or predicate}")
        await asyncio.sleep(0.05)
