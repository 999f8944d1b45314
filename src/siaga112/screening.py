"""Screening: is this caller on the prank and ghost-call blocklist?

The check is a dict lookup in memory, refreshed from the records store in the background: at
once when told the blocklist changed (``changed()``: PostgreSQL's NOTIFY from any process that
changed it, heard by ``records.listen``, or this daemon's own policy), and every
``refresh_interval`` seconds as a safety net. It fails open: if the blocklist has never been
read, or cannot be read, nobody is blocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from siaga112.model import BlockEntry, utcnow

log = structlog.get_logger(__name__)

BlockLoader = Callable[[], Awaitable[list[BlockEntry]]]


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    reason: str
    until: datetime | None = None


class Screening:
    def __init__(self, load: BlockLoader, refresh_interval: float = 30.0) -> None:
        self._load = load
        self._interval = refresh_interval
        self._blocks: dict[str, BlockEntry] = {}
        self._wake = asyncio.Event()
        self.loaded = False

    def check(self, e164: str | None) -> Verdict:
        if e164 is None:
            return Verdict(False, "no usable caller id")
        entry = self._blocks.get(e164)
        if entry is None:
            return Verdict(False, "not listed")
        if entry.blocked_until is not None and entry.blocked_until <= utcnow():
            return Verdict(False, "block expired")
        return Verdict(True, entry.reason, entry.blocked_until)

    def changed(self) -> None:
        """The blocklist changed (policy, CLI, API): reload soon."""
        self._wake.set()

    async def reload(self) -> None:
        try:
            entries = await self._load()
        except Exception as exc:  # fail open: keep what we had, block nobody new
            log.warning("blocklist_unreadable", error=str(exc)[:200], kept=len(self._blocks))
            return
        self._blocks = {e.number: e for e in entries}
        self.loaded = True
        log.info("blocklist_loaded", entries=len(self._blocks))

    async def run(self) -> None:
        while True:
            await self.reload()
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
