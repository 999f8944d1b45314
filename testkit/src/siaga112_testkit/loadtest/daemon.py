"""The daemon under load: its HTTP API as the load test uses it, and a guard that makes sure a
daemon is connected for the run (the one already running, or one we start and stop by pid).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from siaga112.settings import Settings
from siaga112_testkit import cpuprof
from siaga112_testkit.devstack import procs

log = structlog.get_logger(__name__)

Say = Callable[[str], None]


class DaemonError(RuntimeError):
    """The daemon did not come up, or answered its API with an error; the message says which."""


class DaemonApi:
    """The daemon's operations API (docs/api.md) with an admin or supervisor token."""

    def __init__(self, base_url: str, token: str | None, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = session

    async def _call(self, method: str, path: str, body: Any = None,
                    params: Mapping[str, str] | None = None) -> Any:
        url = self.base_url + path
        try:
            async with self._session.request(
                method, url, json=body, params=params, headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise DaemonError(f"{method} {url}: HTTP {resp.status}: {text[:300]}")
                if resp.content_type == "application/json":
                    return await resp.json()
                return text
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DaemonError(f"{method} {url}: {exc!r}") from exc

    async def healthy(self) -> bool:
        try:
            await self._call("GET", "/health")
        except DaemonError:
            return False
        return True

    async def ari_connected(self) -> bool:
        try:
            ready = await self._call("GET", "/ready")
        except DaemonError as exc:
            if "HTTP 503" in str(exc):
                return False
            raise
        return bool(ready.get("ari"))

    async def metrics(self) -> str:
        return str(await self._call("GET", "/metrics"))

    async def queue_length(self) -> int:
        return int((await self._call("GET", "/queue")).get("length", 0))

    async def operators(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/operators"))["operators"])

    async def set_operator(self, name: str, state: str, reason: str = "load test") -> None:
        await self._call("POST", f"/operators/{name}/state", {"state": state, "reason": reason})

    async def block(self, number: str, hours: float, reason: str) -> None:
        await self._call("POST", "/blocklist", {"number": number, "hours": hours,
                                                "reason": reason})

    async def unblock(self, number: str, reason: str) -> None:
        try:
            await self._call("DELETE", f"/blocklist/{number}", params={"reason": reason})
        except DaemonError as exc:
            if "HTTP 404" not in str(exc):
                raise


def admin_token(settings: Settings) -> str | None:
    """The first admin token of the settings (the local stack writes one), else a supervisor's."""
    for role in ("admin", "supervisor"):
        for t in settings.api.tokens:
            if t.role == role:
                return t.token.get_secret_value()
    return None


@dataclass(frozen=True)
class DaemonHandle:
    api: DaemonApi
    started_by_us: bool
    pid: int | None
    settings_note: str  # which settings the daemon under test runs with
    logfile: Path | None = None  # the log of a daemon we started (its error lines count)
    folded: Path | None = None  # where its CPU-time sampler writes (started sampled)


async def _wait(predicate: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if await predicate():
                return
        except DaemonError:
            pass
        if time.monotonic() > deadline:
            raise DaemonError(f"{what} within {seconds:g} s")
        await asyncio.sleep(0.2)


# The load's desk phones are SIPp playing no media: a daemon that watched them (the default,
# queue.desk_media_timeout) would take each one as lost after 10 s of a call.
SILENT_DESK_PHONES = {"SIAGA112_QUEUE__DESK_MEDIA_TIMEOUT": "0"}


@asynccontextmanager
async def daemon_running(
    settings: Settings, overrides: Mapping[str, str], say: Say, sampled: bool = False
) -> AsyncIterator[DaemonHandle]:
    """A daemon connected to the PBX for the run. One answering /health on the settings' API
    address is used as it is (overrides then do not apply: it keeps its own settings).
    Otherwise `siaga112 run` is started with the overrides as SIAGA112_* environment variables
    and stopped by its pid (SIGTERM: it hands waiting callers back) when the run ends;
    sampled: under the CPU-time sampler (cpuprof.py), idle until cpuprof.sampling() starts it."""
    base = f"http://{settings.api.host}:{settings.api.port}"
    async with aiohttp.ClientSession() as session:
        api = DaemonApi(base, admin_token(settings), session)
        if await api.healthy():
            say(f"using the daemon already running at {base} (its own settings)")
            await _wait(api.ari_connected, 10, "the running daemon did not connect to ARI")
            yield DaemonHandle(api, started_by_us=False, pid=None,
                               settings_note="the running daemon's own settings")
            return
        state = settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        pidfile, logfile = state / "siaga112.pid", state / "loadtest-daemon.log"
        overrides = {**SILENT_DESK_PHONES, **overrides}
        env = {**os.environ, **overrides}
        argv = [sys.executable, "-m", "siaga112.cli", "run"]
        folded = state / "daemon.folded" if sampled else None
        if folded is not None:
            argv = cpuprof.wrapped(folded, "siaga112.cli", "run")
        pid = procs.spawn(argv, pidfile, logfile, env=env)
        note = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
        say(f"started the daemon (pid {pid}, log {logfile}) with {note}")
        try:
            await _wait(api.healthy, 30, f"the daemon did not answer {base}/health (log {logfile})")
            await _wait(api.ari_connected, 30, f"the daemon did not connect to ARI (log {logfile})")
            yield DaemonHandle(api, started_by_us=True, pid=pid, settings_note=note,
                               logfile=logfile, folded=folded)
        finally:
            await asyncio.to_thread(procs.stop_pid, pidfile, timeout=15)
            say(f"stopped the daemon (pid {pid})")


async def set_operators(api: DaemonApi, names: list[str], logged_in: int) -> dict[str, str]:
    """Log in the first `logged_in` operators, log out the rest; return what each had chosen,
    for restore_operators."""
    before: dict[str, str] = {}
    for op in await api.operators():
        state = str(op["state"])
        before[str(op["operator"])] = state if state in ("paused", "logged_out") else "available"
    for i, name in enumerate(names):
        await api.set_operator(name, "available" if i < logged_in else "logged_out")
    return before


async def restore_operators(api: DaemonApi, before: Mapping[str, str]) -> None:
    for name, state in before.items():
        try:
            await api.set_operator(name, state, reason="restored after the load test")
        except DaemonError as exc:
            log.warning("operator_restore_failed", operator=name, error=str(exc))
