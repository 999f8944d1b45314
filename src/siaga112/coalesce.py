"""Coalescing of "something changed" pokes: under load the queue and the operators' desk change
many times a second, and each change used to build and publish a whole snapshot (the queue's
entries, every operator's state) to MQTT, the console's live feed and the metrics. A poke now
schedules one publication a short moment later, which reads the state as it is then."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

DELAY = 0.05  # s: a dashboard sees the change this much later; the calls never wait for it


class Coalesced:
    def __init__(self, publish: Callable[[], None], delay: float = DELAY) -> None:
        self._publish = publish
        self._delay = delay
        self._handle: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller, a test): publish now
            self._run()
            return
        self._handle = loop.call_later(self._delay, self._run)

    def flush(self) -> None:
        """Publish now what is pending (at a stop)."""
        if self._handle is not None:
            self._handle.cancel()
            self._run()

    def _run(self) -> None:
        self._handle = None
        try:
            self._publish()
        except Exception:  # a publisher's fault must not reach the call that poked
            log.exception("publish_failed", publisher=getattr(self._publish, "__name__", "?"))
