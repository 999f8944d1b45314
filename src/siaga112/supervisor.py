"""One supervisor for the daemon's background work: every loop runs under it, is logged when it
fails, restarted with a capped backoff, and stopped in one place in reverse order of starting.

Two shapes of work:
- `every(name, seconds, step)`: a periodic step (a sweep, a check). A failing step is logged
  and the next one runs after the backoff; the job never stops by itself.
- `keep(name, factory)`: a long-running coroutine (a reader, a writer). If it raises, it is
  started again after the backoff; if it returns, it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0


class Supervisor:
    def __init__(self, backoff_initial: float = BACKOFF_INITIAL,
                 backoff_max: float = BACKOFF_MAX) -> None:
        self._initial = backoff_initial
        self._max = backoff_max
        self._tasks: list[asyncio.Task[None]] = []
        self.restarts: dict[str, int] = {}

    def keep(self, name: str, factory: Callable[[], Awaitable[Any]]) -> None:
        self._start(name, self._keep(name, factory))

    def every(self, name: str, seconds: float, step: Callable[[], Awaitable[Any]],
              first_after: float | None = None) -> None:
        self._start(name, self._every(name, seconds, step,
                                      seconds if first_after is None else first_after))

    def _start(self, name: str, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)

    async def _keep(self, name: str, factory: Callable[[], Awaitable[Any]]) -> None:
        delay = self._initial
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                log.exception("background_task_failed", task=name, restart_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max)

    async def _every(self, name: str, seconds: float, step: Callable[[], Awaitable[Any]],
                     first_after: float) -> None:
        await asyncio.sleep(first_after)
        delay = self._initial
        while True:
            try:
                await step()
                delay, wait = self._initial, seconds
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                log.exception("background_step_failed", task=name, retry_in=delay)
                wait, delay = delay, min(delay * 2, self._max)
            await asyncio.sleep(wait)

    async def stop(self, grace: float) -> None:
        """Cancel every job, newest first, and wait at most `grace` seconds for them."""
        for task in reversed(self._tasks):
            task.cancel(msg="daemon stopping")
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                log.warning("background_task_not_stopped", task=task.get_name())
        self._tasks.clear()
