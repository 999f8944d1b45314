"""One ARI over the cluster's Asterisk nodes (docs/cluster.md): the daemon's parts ask it as they
ask a single PBX's `AriClient`, and each request goes to the node the call lives on.

Where a request goes:
- a channel, an operator's or agency's leg, a call's bridge: the node whose systemname starts
  the call id (`node1-1764500000.12`, legs.node_of). So the operator's leg is originated on the
  caller's node, and the call's bridge is made there;
- an id with no node in it (a playback, a callback's or supervisor's leg): the node it was made
  on (remembered when it was made, bounded), else the home node;
- the holding bridges: each on every node (a waiting caller is added to their own node's);
- what is about the whole centre (channels, bridges, the application, globals, event
  subscriptions): every node that answers; a node that does not is left out and logged.
The home node is the first node whose events socket is up (new callbacks and supervisor legs
are made there).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog

from siaga112 import legs
from siaga112.ari.client import AriClient, AriError
from siaga112.ari.models import Application, Bridge, Channel, Endpoint, Playback, RtpStats

log = structlog.get_logger(__name__)

PINS_MAX = 20_000  # ids remembered with their node (an id with no node in its name)
T = TypeVar("T")


class ClusterAri:
    def __init__(self, clients: dict[str, AriClient]) -> None:
        if not clients:
            raise ValueError("a cluster needs at least one node")
        self._clients = clients
        self.names = tuple(clients)
        self.up: set[str] = set()  # events socket connected
        self.lost: set[str] = set()  # down longer than ari.node_lost_after (stasis.py)
        self._pins: OrderedDict[str, str] = OrderedDict()

    # -- nodes -----------------------------------------------------------------------------

    def client(self, name: str) -> AriClient:
        return self._clients[name]

    def mark_up(self, name: str) -> None:
        self.up.add(name)
        self.lost.discard(name)

    def mark_down(self, name: str) -> None:
        self.up.discard(name)

    def node_lost(self, resource_id: str) -> bool:
        """Is the node of this call (or leg) taken as dead?"""
        node = legs.node_of(resource_id, self.names)
        return node is not None and node in self.lost

    def home(self) -> str:
        return next((n for n in self.names if n in self.up), self.names[0])

    def node_for(self, resource_id: str) -> str:
        return (self._pins.get(resource_id) or legs.node_of(resource_id, self.names)
                or self.home())

    def _pin(self, resource_id: str, node: str) -> None:
        self._pins[resource_id] = node
        self._pins.move_to_end(resource_id)
        while len(self._pins) > PINS_MAX:
            self._pins.popitem(last=False)

    def _on(self, resource_id: str) -> AriClient:
        return self._clients[self.node_for(resource_id)]

    async def _every(self, what: str, call: Callable[[AriClient], Awaitable[T]]) -> list[T]:
        """Ask every node (those up, or all while none is): the answers of those that gave
        one. Raises the first error only when no node answered."""
        names = [n for n in self.names if n in self.up] or list(self.names)
        results = await asyncio.gather(*(call(self._clients[n]) for n in names),
                                       return_exceptions=True)
        ok: list[T] = []
        first_error: BaseException | None = None
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, AriError):
                    raise result
                first_error = first_error or result
                log.warning("ari_node_left_out", node=name, request=what, error=str(result))
            else:
                ok.append(result)
        if not ok and first_error is not None:
            raise first_error
        return ok

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    # -- channels ---------------------------------------------------------------------------

    async def answer(self, channel_id: str) -> None:
        await self._on(channel_id).answer(channel_id)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self._on(channel_id).hangup(channel_id, reason)

    async def continue_in_dialplan(
        self, channel_id: str, context: str | None = None, extension: str = "s", priority: int = 1
    ) -> None:
        await self._on(channel_id).continue_in_dialplan(channel_id, context, extension, priority)

    async def get_channel(self, channel_id: str) -> Channel:
        return await self._on(channel_id).get_channel(channel_id)

    async def rtp_statistics(self, channel_id: str) -> RtpStats:
        return await self._on(channel_id).rtp_statistics(channel_id)

    async def channels(self) -> list[Channel]:
        found = await self._every("channels", lambda c: c.channels())
        return [ch for node in found for ch in node]

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        await self._on(channel_id).set_var(channel_id, name, value)

    async def get_var(self, channel_id: str, name: str) -> str:
        return await self._on(channel_id).get_var(channel_id, name)

    async def play(self, channel_id: str, media: str, playback_id: str | None = None) -> Playback:
        node = self.node_for(channel_id)
        playback = await self._clients[node].play(channel_id, media, playback_id)
        self._pin(playback.id, node)
        return playback

    async def snoop(self, channel_id: str, snoop_id: str, app: str, app_args: str = "",
                    spy: str = "none", whisper: str = "none") -> Channel:
        node = self.node_for(channel_id)
        self._pin(snoop_id, node)
        return await self._clients[node].snoop(channel_id, snoop_id, app, app_args, spy, whisper)

    async def stop_playback(self, playback_id: str) -> None:
        await self._on(playback_id).stop_playback(playback_id)

    async def get_playback(self, playback_id: str) -> Playback:
        return await self._on(playback_id).get_playback(playback_id)

    async def start_moh(self, channel_id: str, moh_class: str = "default") -> None:
        await self._on(channel_id).start_moh(channel_id, moh_class)

    async def stop_moh(self, channel_id: str) -> None:
        await self._on(channel_id).stop_moh(channel_id)

    async def ring(self, channel_id: str) -> None:
        await self._on(channel_id).ring(channel_id)

    async def originate(
        self,
        endpoint: str,
        channel_id: str,
        app: str,
        app_args: str,
        caller_id: str | None = None,
        ring_seconds: int = 30,
        variables: dict[str, str] | None = None,
    ) -> Channel:
        node = self.node_for(channel_id)
        self._pin(channel_id, node)
        return await self._clients[node].originate(endpoint, channel_id, app, app_args,
                                                   caller_id, ring_seconds, variables)

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                      json: dict[str, Any] | None = None) -> Any:
        """A raw request (callbacks.py dials the citizen so): to the node of the resource the
        path names, or of the channel id an originate asks for."""
        parts = path.strip("/").split("/")
        resource = parts[1] if len(parts) > 1 and parts[0] in (
            "channels", "bridges", "playbacks") else None
        if resource is None and parts[0] == "channels" and params and params.get("channelId"):
            resource = str(params["channelId"])
        node = self.node_for(resource) if resource else self.home()
        if resource:
            self._pin(resource, node)
        return await self._clients[node].request(method, path, params, json)

    # -- bridges ----------------------------------------------------------------------------

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> Bridge:
        if legs.is_holding(bridge_id):
            made = await self._every("create holding bridge",
                                     lambda c: c.create_bridge(bridge_id, kind, name))
            return made[0]
        node = self.node_for(bridge_id)
        self._pin(bridge_id, node)
        return await self._clients[node].create_bridge(bridge_id, kind, name)

    async def get_bridge(self, bridge_id: str) -> Bridge:
        if legs.is_holding(bridge_id):
            found = await self._every("holding bridge", lambda c: c.get_bridge(bridge_id))
            return found[0].model_copy(
                update={"channels": [ch for b in found for ch in b.channels]})
        return await self._on(bridge_id).get_bridge(bridge_id)

    async def bridges(self) -> list[Bridge]:
        found = await self._every("bridges", lambda c: c.bridges())
        return [b for node in found for b in node]

    async def destroy_bridge(self, bridge_id: str) -> None:
        if legs.is_holding(bridge_id):
            await self._every("destroy holding bridge", lambda c: c.destroy_bridge(bridge_id))
            return
        await self._on(bridge_id).destroy_bridge(bridge_id)

    async def add_to_bridge(self, bridge_id: str, channel_id: str | Sequence[str],
                            role: str | None = None) -> None:
        first = channel_id if isinstance(channel_id, str) else channel_id[0]
        target = first if legs.is_holding(bridge_id) else bridge_id
        await self._on(target).add_to_bridge(bridge_id, channel_id, role)

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        target = channel_id if legs.is_holding(bridge_id) else bridge_id
        await self._on(target).remove_from_bridge(bridge_id, channel_id)

    async def bridge_play(self, bridge_id: str, media: str) -> Playback:
        if legs.is_holding(bridge_id):
            played = await self._every("holding announcement",
                                       lambda c: c.bridge_play(bridge_id, media))
            return played[0]
        node = self.node_for(bridge_id)
        playback = await self._clients[node].bridge_play(bridge_id, media)
        self._pin(playback.id, node)
        return playback

    # -- the application, endpoints, globals -----------------------------------------------

    async def application(self, app: str) -> Application:
        found = await self._every("application", lambda c: c.application(app))
        return found[0].model_copy(
            update={"channel_ids": [ch for a in found for ch in a.channel_ids]})

    async def subscribe(self, app: str, event_source: str) -> None:
        await self._every("subscribe", lambda c: c.subscribe(app, event_source))

    async def filter_events(self, app: str, disallowed: Sequence[str]) -> None:
        await self._every("event filter", lambda c: c.filter_events(app, disallowed))

    async def endpoints(self, technology: str = "PJSIP") -> list[Endpoint]:
        return await self._clients[self.home()].endpoints(technology)

    async def get_global(self, variable: str) -> str:
        return await self._clients[self.home()].get_global(variable)

    async def set_global(self, variable: str, value: str) -> None:
        await self._every("set global", lambda c: c.set_global(variable, value))
