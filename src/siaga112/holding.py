"""The holding bridges where callers wait for an operator: music on hold, and a periodic
announcement in Bahasa Indonesia. A fixed set of bridges with fixed ids for the whole centre;
each caller waits in the one their channel id names (legs.holding_bridge)."""

from __future__ import annotations

import asyncio

import structlog

from siaga112 import legs
from siaga112.ari.client import AriError, NotFound
from siaga112.ari.protocol import Ari
from siaga112.ari.retry import patiently

log = structlog.get_logger(__name__)


class HoldingBridge:
    def __init__(self, ari: Ari, announce_interval: float) -> None:
        self._ari = ari
        self.interval = announce_interval
        self._ready: set[str] = set()  # bridges made (or found) since the last connect

    async def ensure(self) -> None:
        """Make every holding bridge. One that cannot be made is left for the next caller who
        waits in it to try again; the others serve their callers meanwhile."""
        results = await asyncio.gather(*(self._make(b) for b in legs.holding_bridges()),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _make(self, bridge: str) -> None:
        await self._ari.create_bridge(bridge, "holding", "siaga112 queue")
        self._ready.add(bridge)

    async def add(self, channel_id: str) -> None:
        """Into their holding bridge. Each caller there hears music on hold by himself (a holding
        bridge's participants do, while no announcer is in it): no bridge-wide music channel
        to start (tests/integration/test_holding_music.py)."""
        bridge = legs.holding_bridge(channel_id)
        if bridge not in self._ready:
            await self._make(bridge)
        try:
            await patiently("holding add", lambda: self._add(channel_id),
                            done=lambda: self._holds(channel_id))
        except NotFound as exc:
            if "ridge" not in exc.message:
                raise
            # Someone destroyed our bridge: make it again and retry once.
            self._ready.discard(bridge)
            await self._make(bridge)
            await self._add(channel_id)

    async def _add(self, channel_id: str) -> None:
        await self._ari.add_to_bridge(legs.holding_bridge(channel_id), channel_id,
                                      role="participant")

    async def _holds(self, channel_id: str) -> bool:
        bridge = legs.holding_bridge(channel_id)
        return channel_id in (await self._ari.get_bridge(bridge)).channels

    def invalidate(self) -> None:
        self._ready.clear()

    async def announce(self) -> None:
        """The periodic "please wait" to everyone waiting, in each holding bridge that has
        someone (run by the supervisor every announce_interval seconds)."""
        try:
            waiting = sorted({b.id for b in await self._ari.bridges()
                              if legs.is_holding(b.id) and b.channels})
        except AriError as exc:
            log.debug("holding_announce_skipped", error=str(exc))
            return
        for bridge in waiting:
            try:
                await self._ari.bridge_play(bridge, "sound:siaga112/please-wait")
            except AriError as exc:
                log.debug("holding_announce_skipped", bridge=bridge, error=str(exc))
