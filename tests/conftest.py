"""Fixtures shared by every test. The integration fixtures bring the local stack up (real
Asterisk 22, PostgreSQL, Mosquitto: `siaga112 stack up`, idempotent) and give each test its own
daemon, then clean up the calls, bridges and operator states the test made."""

from __future__ import annotations

import asyncio
import fcntl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
    return path.parent.name != "unit" or "records" in path.name


def pytest_collection_finish(session: pytest.Session) -> None:
    """One test run at a time on the machine's one local stack: the PBX's addresses are fixed
    by the topology, so two runs would answer each other's calls, and some tests stop
    PostgreSQL or Mosquitto on purpose. A second run waits here for the first to end (before
    any test starts, so the wait is not counted in a test's timeout). `siaga112 load-test` and
    `siaga112 bench` take the same lock. Runs of pure unit tests need no lock."""
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
def stack() -> Stack:
    from siaga112.devstack import procs
    from siaga112.devstack import stack as devstack
    from siaga112.devstack.pbx import Pbx
    from siaga112.devstack.postgres import database_url

    pid = procs.read_pid(STATE / "siaga112.pid")
    if pid is not None:
        pytest.exit(f"a siaga112 daemon (pid {pid}, from `make up`) is connected to the test "
                    "PBX and would take the tests' calls: run `make down` first", returncode=3)
    devstack.up(REPO, STATE)
    pbx = Pbx(repo=REPO, state_dir=STATE)
    return Stack(db_url=database_url(devstack.PG_PORT), recordings=pbx.recordings,
                 fallback_journal=pbx.fallback_journal,
                 state_dir=STATE)


def daemon_settings(stack: Stack, tmp_path: Path, **overrides: Any) -> Any:
    """Settings for a daemon under test: the local stack, short timers, its own MQTT prefix."""
    from siaga112.settings import Settings

    base: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "fallback_journal": stack.fallback_journal,
        "log_level": "debug",
        "database": {"url": stack.db_url, "flush_interval": 0.05, "retry_interval": 0.2},
        "recording": {"dir": stack.recordings},
        "mqtt": {"topic_prefix": f"test-{uuid.uuid4().hex[:8]}/siaga112"},
        "queue": {"ring_timeout": 4, "wrapup": 0, "announce_interval": 5},
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


async def reset_pbx(logged_in: list[str]) -> None:
    """Hang up every channel, remove our bridges, set operators' astdb state."""
    from siaga112.ari.client import AriClient, AriError
    from siaga112.operators import reason_var, state_var
    from siaga112.settings import AriSettings

    async with AriClient(AriSettings()) as ari:
        for ch in await ari.channels():
            try:
                await ari.hangup(ch.id)
            except AriError:
                pass
        for b in await ari.bridges():
            if b.id.startswith("siaga112-"):
                try:
                    await ari.destroy_bridge(b.id)
                except AriError:
                    pass
        for op in OPERATORS:
            state = "available" if op in logged_in else "logged_out"
            await ari.set_global(state_var(op), state)
            await ari.set_global(reason_var(op), "")
        for _ in range(50):
            if not await ari.channels():
                break
            await asyncio.sleep(0.1)


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
