"""A PBX that stalls for longer than the request timeout (a flood it cannot keep up with, a VM
its host paused): the real Asterisk 22, stopped with SIGSTOP and let go again. Asterisk reads
one events socket's requests in one thread, in the order asked (ari/socket_rest.py): a request
that timed out there is not lost, it waits in that queue and is carried out once Asterisk runs.
What the daemon asks meanwhile goes over HTTP; once the late request is answered, the socket
carries requests again.

And the socket's thread alone stalled (the flood's case), as a caller arrives: between the
daemon and Asterisk, a small proxy holds the caller's holding-bridge request on the events
socket, and every socket request behind it, as Asterisk's busy thread would. The caller's
timeline: their holding-bridge add is late, the operator's phone answers meanwhile, and the
caller must stay with the operator until they hang up themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from siaga112 import legs
from siaga112.ari.client import AriClient, Unreachable
from siaga112.ari.events import EventStream
from siaga112.ari.socket_rest import SocketRest
from siaga112.model import CallState, Disposition
from siaga112_testkit.loadtest.runner import local_pbx_pid
from tests.conftest import ari_settings, wait_for
from tests.integration.pbx_view import holding_channels
from tests.integration.phones import MOBILE, e164, mobile_number
from tests.integration.test_call_path import call_of, record

pytestmark = pytest.mark.integration

VAR = "SIAGA112_STALL_TEST"


async def test_a_stalled_pbx_carries_out_the_late_request_and_the_next_goes_over_http(
        stack) -> None:
    pid = local_pbx_pid()
    assert pid is not None, "the test PBX is not running"
    # HTTP waits up to 10 s; the socket's answer is late after 0.5 s.
    settings = ari_settings().model_copy(update={"request_timeout": 10.0,
                                                 "app": "siaga112-stall-test"})
    rest = SocketRest(0.5)
    via: list[str] = []

    async def on_connect() -> None:
        return None

    stream = EventStream(settings, on_event=lambda _e: None, on_connect=on_connect, rest=rest)
    task = asyncio.create_task(stream.run())
    stopped = False
    try:
        await wait_for(lambda: rest.attached, 10, "requests over the socket")
        async with AriClient(settings, observe=lambda _m, _s, v: via.append(v),
                             socket=rest) as ari:
            await ari.set_global(VAR, "before")
            os.kill(pid, signal.SIGSTOP)
            stopped = True
            with pytest.raises(Unreachable, match="no answer within 0.5 s"):
                await ari.set_global(VAR, "late")
            assert rest.behind
            # Asked while the PBX is still stopped: over HTTP, answered once it runs again.
            asking = asyncio.create_task(ari.get_global(VAR))
            await asyncio.sleep(0.5)
            assert not asking.done()
            os.kill(pid, signal.SIGCONT)
            stopped = False
            assert await asyncio.wait_for(asking, 10) in ("before", "late")
            await wait_for(lambda: not rest.behind, 10, "the late answer")
            # The late request was carried out, and the socket carries the next one.
            assert await ari.get_global(VAR) == "late"
            assert via == ["socket", "socket", "http", "socket"]
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        stream.stop()
        task.cancel()  # its reader waits on the socket, which the PBX keeps open
        with contextlib.suppress(asyncio.CancelledError):
            await task


class SlowSocket:
    """A proxy in front of Asterisk's ARI. HTTP passes as it is. The daemon's requests on the
    events socket reach Asterisk one at a time, in the order sent; the first that `hold`
    matches waits `seconds` first, and every one behind it waits with it (Asterisk's one
    thread for the socket, busy). `carried`: ("socket" or "http", method, uri) in the order
    they reached Asterisk."""

    def __init__(self, hold: Callable[[dict[str, Any]], bool], seconds: float) -> None:
        self._target = ari_settings().url.rstrip("/")
        self._hold, self._seconds = hold, seconds
        self.held: dict[str, Any] | None = None
        self.released = asyncio.Event()
        self.carried: list[tuple[str, str, str]] = []
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SlowSocket]:
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_route("*", "/ari/{uri:.+}", self._http)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/ari"
        async with aiohttp.ClientSession() as self._session:
            try:
                yield self
            finally:
                await runner.cleanup()

    async def _http(self, request: web.Request) -> web.Response:
        uri = request.match_info["uri"]
        self.carried.append(("http", request.method, uri))
        async with self._session.request(
                request.method, f"{self._target}/{uri}", params=request.query,
                data=await request.read(), headers={
                    k: v for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type")}) as resp:
            return web.Response(status=resp.status, body=await resp.read(),
                                content_type=resp.content_type)

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        daemon = web.WebSocketResponse()
        await daemon.prepare(request)
        ws_url = self._target.replace("http://", "ws://", 1) + "/events"
        async with self._session.ws_connect(
                ws_url, params=request.query, max_msg_size=0,
                headers={"Authorization": request.headers["Authorization"]}) as pbx:

            async def to_daemon() -> None:
                async for msg in pbx:
                    if msg.type != WSMsgType.TEXT:
                        break
                    await daemon.send_str(msg.data)

            async def to_pbx() -> None:
                async for msg in daemon:
                    if msg.type != WSMsgType.TEXT:
                        break
                    sent = json.loads(msg.data)
                    if self.held is None and self._hold(sent):
                        self.held = sent
                        await asyncio.sleep(self._seconds)
                        self.released.set()
                    self.carried.append(("socket", sent["method"], sent["uri"]))
                    await pbx.send_str(msg.data)

            tasks = [asyncio.create_task(to_daemon()), asyncio.create_task(to_pbx())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        await daemon.close()
        return daemon


def holding_add(request: dict[str, Any]) -> bool:
    parts = str(request.get("uri", "")).split("/")
    return (request.get("method") == "POST" and len(parts) == 3 and parts[0] == "bridges"
            and legs.is_holding(parts[1]) and parts[2] == "addChannel")


@pytest.fixture
async def slow_holding_add() -> AsyncIterator[SlowSocket]:
    """Set up before the daemon and stopped after it: the daemon's last requests pass too."""
    async with SlowSocket(holding_add, seconds=2.5).running() as proxy:
        yield proxy


async def test_a_callers_late_holding_add_never_takes_them_from_the_operator(
        slow_holding_add: SlowSocket, daemon_factory, phones) -> None:
    """The socket's thread holds the caller's holding-bridge add for 2.5 s (the daemon waits
    1 s for an answer). The daemon asks again, the operator's phone rings and answers in
    0.3 s: the late add must reach Asterisk before the call's bridge is made, or it would pull
    the caller out of it, alone in the holding bridge with the operator gone quiet."""
    proxy = slow_holding_add
    daemon = await daemon_factory(logged_in=["op1"],
                                  ari={"url": proxy.url, "request_timeout": 1.0})
    op1 = await phones.operator(1, ring=0.3, talk=None)  # stays until the caller leaves
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=9.0,
                                   audio=phones.pcaps.speech(10))
    call_id = await call_of(daemon, e164(number))
    session = daemon.stasis.sessions[call_id]
    await asyncio.wait_for(proxy.released.wait(), 10)
    assert proxy.held is not None
    assert call_id in {q["value"] for q in proxy.held.get("query_strings", [])}
    await wait_for(lambda: session.state is CallState.CONNECTED, 15, "connected")
    # Well after the late add was carried out: still with the operator, not on hold.
    await asyncio.sleep(1.5)
    async with AriClient(ari_settings()) as ari:
        bridge = await ari.get_bridge(legs.call_bridge(call_id))
        assert sorted(bridge.channels) == sorted([call_id, session.operator_channel])
        assert call_id not in await holding_channels(ari)
    late = proxy.carried.index(("socket", "POST", proxy.held["uri"]))
    made = proxy.carried.index(next(c for c in proxy.carried if c[2] == (
        f"bridges/{legs.call_bridge(call_id)}/addChannel")))
    assert late < made, proxy.carried
    # The caller talks to the end and hangs up themselves; the operator is let go.
    assert (await citizen.wait(20)).ok, "the caller was cut off"
    assert (await op1.wait(10)).ok
    detail = await record(daemon, call_id)
    assert detail.call.operator == "op1"
    assert detail.call.disposition == Disposition.GENUINE.value
