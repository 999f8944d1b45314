"""The ARI events websocket, with reconnect and backoff.

`EventStream.run(handler)` never returns while running: when Asterisk closes the socket (restart,
`module reload`, network fault) it logs, waits with a capped exponential backoff and connects
again, calling `on_connect` each time so that the daemon resyncs its view of live calls from
Asterisk. The reader never blocks: `handler` must only enqueue (see stasis.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import pydantic
import structlog

from siaga112.ari.client import auth_headers
from siaga112.ari.models import AriEvent, parse_event
from siaga112.ari.socket_rest import SocketRest
from siaga112.settings import AriSettings

# The most time the reader spends on messages that were already waiting before it lets the
# loop run the calls it handed them to. After the daemon waited for a core, hundreds can be
# waiting: read in one go, they held up the take-in of calls that arrived among them by up to
# 56 ms at 180 calls/s (docs/load-testing.md, twenty-second round).
READ_SLICE = 0.002
# A message that came later than this after the last one was handled was waited for: the
# slice starts anew with it (no extra turn of the loop for a message read on its own).
WAITED = 0.0005

log = structlog.get_logger(__name__)


class EventStream:
    def __init__(
        self,
        settings: AriSettings,
        on_event: Callable[[AriEvent], None],
        on_connect: Callable[[], Awaitable[None]],
        on_disconnect: Callable[[], None] | None = None,
        on_reconnect_attempt: Callable[[], None] | None = None,
        on_received: Callable[[str], None] | None = None,
        rest: SocketRest | None = None,
    ) -> None:
        self._settings = settings
        self._on_event = on_event
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_attempt = on_reconnect_attempt
        self._on_received = on_received  # (event type) for the metrics
        self._rest = rest  # ARI requests carried by this socket while it is up
        self.connected = asyncio.Event()
        self._stopping = False

    def _url(self) -> str:
        base = self._settings.url.rstrip("/")
        ws = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return f"{ws}/events"

    async def run(self) -> None:
        delay = self._settings.reconnect_initial
        params = {"app": self._settings.app, "subscribeAll": "false"}
        async with aiohttp.ClientSession(headers=auth_headers(self._settings)) as session:
            while not self._stopping:
                try:
                    async with session.ws_connect(
                        self._url(), params=params, heartbeat=10, max_msg_size=0
                    ) as ws:
                        log.info("ari_connected", app=self._settings.app)
                        delay = self._settings.reconnect_initial
                        self.connected.set()
                        # Resync runs beside the reader: events that arrive meanwhile queue up.
                        # So does the socket's first request (until it answers, HTTP carries
                        # the requests).
                        beside = [asyncio.create_task(self._resync())]
                        if self._rest is not None:
                            beside.append(asyncio.create_task(self._rest.attach(ws)))
                        try:
                            await self._read(ws)
                        finally:
                            for task in beside:
                                if not task.done():
                                    task.cancel()
                    if not self._stopping:
                        log.warning("ari_disconnected", reason="socket closed by Asterisk")
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("ari_connect_failed", error=str(exc), retry_in=round(delay, 2))
                finally:
                    if self._rest is not None:
                        self._rest.detach()
                    if self.connected.is_set():
                        self.connected.clear()
                        if self._on_disconnect is not None:
                            self._on_disconnect()
                if self._stopping:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.reconnect_max)
                if self._on_attempt is not None:
                    self._on_attempt()

    async def _resync(self) -> None:
        """Callers waiting in Asterisk are ours again only once a resync succeeds: a failed one
        is tried again, with a capped backoff, for as long as the socket is up (this task is
        cancelled when it goes down; the next connect starts a new one)."""
        delay = self._settings.reconnect_initial
        while True:
            try:
                await self._on_connect()
                return
            except Exception:
                log.exception("resync_failed", retry_in=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.reconnect_max)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        begun = handled = 0.0
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR):
                    break
                continue
            now = time.perf_counter()
            if now - handled > WAITED:
                begun = now
            elif now - begun > READ_SLICE:
                await asyncio.sleep(0)  # the calls handed events so far take their turn
                begun = time.perf_counter()
            self._text(msg.data)
            handled = time.perf_counter()

    def _text(self, data: str) -> None:
        # An answer to one of our requests (socket_rest.py). The quick look can be fooled by a
        # caller's name, never the check after it: such an event is an event.
        if self._rest is not None and '"RESTResponse"' in data:
            answer = _rest_response(data)
            if answer is not None:
                self._rest.answered(answer)
                return
        try:
            event = parse_event(data)
        except (pydantic.ValidationError, ValueError, json.JSONDecodeError) as exc:
            log.error("ari_event_malformed", error=str(exc)[:300], raw=data[:300])
            return
        if self._on_received is not None:
            self._on_received(event.type)
        self._on_event(event)

    def stop(self) -> None:
        self._stopping = True


def _rest_response(text: str) -> dict[str, object] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == "RESTResponse":
        return data
    return None


class EventStreams:
    """Several events sockets run and stopped as one: a cluster's nodes, one socket each
    (docs/cluster.md). `connected` is set while any of them is (call `refresh` from their
    connect and disconnect callbacks)."""

    def __init__(self, streams: Sequence[EventStream]) -> None:
        self.streams = list(streams)
        self.connected = asyncio.Event()

    def refresh(self) -> None:
        if any(s.connected.is_set() for s in self.streams):
            self.connected.set()
        else:
            self.connected.clear()

    async def run(self) -> None:
        await asyncio.gather(*(s.run() for s in self.streams))

    def stop(self) -> None:
        for s in self.streams:
            s.stop()
