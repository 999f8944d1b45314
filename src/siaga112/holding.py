"""The holding bridge where callers wait for an operator: music on hold, and a periodic
announcement in Bahasa Indonesia. One bridge with a fixed id for the whole centre."""

from __future__ import annotations

import structlog

from siaga112.ari.client import AriError, NotFound
from siaga112.ari.protocol import Ari
from siaga112.ari.retry import patiently
from siaga112.legs import HOLDING_BRIDGE

log = structlog.get_logger(__name__)


class HoldingBridge:
    def __init__(self, ari: Ari, announce_interval: float) -> None:
        self._ari = ari
        self.interval = announce_interval
        self._ready = False

    async def ensure(self) -> None:
        await self._ari.create_bridge(HOLDING_BRIDGE, "holding", "siaga112 queue")
        self._ready = True

    async def add(self, channel_id: str) -> None:
        """Into the holding bridge. Each caller there hears music on hold by himself (a holding
        bridge's participants do, while no announcer is in it): no bridge-wide music channel
        to start (tests/integration/test_holding_music.py)."""
        if not self._ready:
            await self.ensure()
        try:
            await patiently("holding add", lambda: self._add(channel_id),
                            done=lambda: self._holds(channel_id))
        except NotFound as exc:
            if "ridge" not in exc.message:
                raise
            # Someone destroyed our bridge: make it again and retry once.
            await self.ensure()
            await self._add(channel_id)

    async def _add(self, channel_id: str) -> None:
        await self._ari.add_to_bridge(HOLDING_BRIDGE, channel_id, role="participant")

    async def _holds(self, channel_id: str) -> bool:
        return channel_id in (await self._ari.get_bridge(HOLDING_BRIDGE)).channels

    async def remove(self, channel_id: str) -> None:
        try:
            await self._ari.remove_from_bridge(HOLDING_BRIDGE, channel_id)
        except (NotFound, AriError) as exc:
            log.debug("holding_remove_ignored", channel=channel_id, error=str(exc))

    def invalidate(self) -> None:
        self._ready = False

    async def announce(self) -> None:
        """The periodic "please wait" to everyone in the holding bridge (run by the
        supervisor every announce_interval seconds)."""
        try:
            bridge = await self._ari.get_bridge(HOLDING_BRIDGE)
            if bridge.channels:
                await self._ari.bridge_play(HOLDING_BRIDGE, "sound:siaga112/please-wait")
        except AriError as exc:
            log.debug("holding_announce_skipped", error=str(exc))
