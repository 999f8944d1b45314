"""Time for a call's timers, injectable: the real event loop in the daemon, a hand-driven fake in
tests (uvicorn's MockLoop idea), so that a timer is checked at its exact instant, never by
sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Handle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle: ...

    def monotonic(self) -> float: ...


class LoopClock:
    """The running event loop's clock."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        return asyncio.get_running_loop().call_later(delay, callback)

    def monotonic(self) -> float:
        return time.monotonic()
