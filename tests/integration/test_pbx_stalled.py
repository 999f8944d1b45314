"""A PBX that stalls for longer than the request timeout (a flood it cannot keep up with, a VM
its host paused): the real Asterisk 22, stopped with SIGSTOP and let go again. Asterisk reads
one events socket's requests in one thread, in the order asked (ari/socket_rest.py): a request
that timed out there is not lost, it waits in that queue and is carried out once Asterisk runs.
What the daemon asks meanwhile goes over HTTP; once the late request is answered, the socket
carries requests again.

And the socket's thread alone stalled (the flood's case), as a caller arrives: between the
daemon and Asterisk, a small proxy holds one request of the call on the events socket, and
every socket request behind it, as Asterisk's busy thread would. The caller's timeline: their
holding-bridge add, the operator's ring or the call's bridge add is late, and the caller must
reach the operator and stay until they hang up themselves. A ring held past the time it would
ring is hung up once made and rung again. A duty line's ring held late is the dispatch's:
the officer who answers it joins the call, the fallback line is not rung. And the events
socket broken for a few seconds (the proxy closes it and refuses it): a duty line that rang
out meanwhile is found gone by the resync, and its fallback line rung.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from siaga112 import legs
from siaga112.ari.client import AriClient, Unreachable
from siaga112.ari.events import EventStream
from siaga112.ari.socket_rest import SocketRest
from siaga112.model import CallState, Disposition, OperatorState
from siaga112_testkit.loadtest.runner import local_pbx_pid
from tests.conftest import ari_settings, serving, wait_for
from tests.integration.pbx_view import holding_channels
from tests.integration.phones import MOBILE, e164, invites, logged, mobile_number
from tests.integration.test_agencies import api_post, bridge_holds, joined
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
    thread for the socket, busy). `carried`: (method, uri, its `channel` query) of each
    request, socket's and HTTP's, in the order they reached Asterisk."""

    def __init__(self, hold: Callable[[str, str, str], bool], seconds: float) -> None:
        self._target = ari_settings().url.rstrip("/")
        self._hold, self._seconds = hold, seconds
        self.held: tuple[str, str, str] | None = None
        self.released = asyncio.Event()
        self.carried: list[tuple[str, str, str]] = []
        self.url = ""
        self._sockets: list[web.WebSocketResponse] = []
        self._refuse_until = self._swallow_until = 0.0

    async def drop(self, seconds: float) -> None:
        """Close the daemon's events socket and refuse it for `seconds` (HTTP passes): the
        events of that time are lost, as when the network between the two breaks."""
        self._refuse_until = time.monotonic() + seconds
        for ws in self._sockets:
            await ws.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SlowSocket]:
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_route("*", "/ari/{uri:.+}", self._http)
        async with aiohttp.ClientSession() as self._session, serving(app) as base:
            self.url = f"{base}/ari"
            yield self

    async def _http(self, request: web.Request) -> web.Response:
        uri = request.match_info["uri"]
        self.carried.append((request.method, uri, request.query.get("channel", "")))
        async with self._session.request(
                request.method, f"{self._target}/{uri}", params=request.query,
                data=await request.read(), headers={
                    k: v for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type")}) as resp:
            return web.Response(status=resp.status, body=await resp.read(),
                                content_type=resp.content_type)

    async def black_hole(self, seconds: float) -> None:
        """Lose every message from Asterisk to the daemon for `seconds`, then close the
        daemon's socket (as its ping would find a half-open connection): Asterisk keeps the
        application active meanwhile and sends its events into the hole."""
        self._swallow_until = time.monotonic() + seconds
        await asyncio.sleep(seconds)
        for ws in self._sockets:
            await ws.close()

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self._refuse_until:
            return web.Response(status=503, text="the events socket is down (test)")
        daemon = web.WebSocketResponse()
        await daemon.prepare(request)
        self._sockets.append(daemon)
        ws_url = self._target.replace("http://", "ws://", 1) + "/events"
        async with self._session.ws_connect(
                ws_url, params=request.query, max_msg_size=0,
                headers={"Authorization": request.headers["Authorization"]}) as pbx:

            async def to_daemon() -> None:
                async for msg in pbx:
                    if msg.type != WSMsgType.TEXT:
                        break
                    if time.monotonic() < self._swallow_until:
                        continue
                    await daemon.send_str(msg.data)

            async def to_pbx() -> None:
                async for msg in daemon:
                    if msg.type != WSMsgType.TEXT:
                        break
                    sent = json.loads(msg.data)
                    query = {q.get("name"): q.get("value")
                             for q in sent.get("query_strings", [])}
                    asked = (sent["method"], sent["uri"],
                             query.get("channel") or query.get("channelId") or "")
                    if self.held is None and self._hold(*asked):
                        self.held = asked
                        await asyncio.sleep(self._seconds)
                        self.released.set()
                    self.carried.append(asked)
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


def bridge_add(is_ours: Callable[[str], object]) -> Callable[[str, str, str], bool]:
    def matches(method: str, uri: str, _channels: str) -> bool:
        parts = uri.split("/")
        return (method == "POST" and len(parts) == 3 and parts[0] == "bridges"
                and bool(is_ours(parts[1])) and parts[2] == "addChannel")
    return matches


def operator_ring(method: str, uri: str, channel_id: str) -> bool:
    return method == "POST" and uri == "channels" and "-op-" in channel_id


# The requests of one call that, late on the socket, could cost the caller their operator:
# the caller's add to the holding bridge (carried out after the call's bridge was made, it
# would pull the caller out of it), the ring of the operator's phone (once taken as not rung:
# the late ring was answered, hung up as too late, and the phone rung again for the same
# caller), and the add of caller and operator to the call's bridge.
LATE = {"holding add": bridge_add(legs.is_holding), "operator ring": operator_ring,
        "call bridge add": bridge_add(legs.call_of_bridge)}


async def in_holding_before(event: asyncio.Event, channel_id: str) -> bool:
    """Whether the channel is seen in a holding bridge before `event` is set."""
    async with AriClient(ari_settings()) as ari:
        while not event.is_set():
            if channel_id in await holding_channels(ari):
                return True
            await asyncio.sleep(0.1)
    return False


@pytest.fixture
async def proxy(request: pytest.FixtureRequest) -> AsyncIterator[SlowSocket]:
    """The proxy, holding what request.param = (hold, seconds) says (none if not given). Set
    up before the daemon and stopped after it: the daemon's last requests pass too."""
    hold, seconds = getattr(request, "param", (lambda *_asked: False, 0.0))
    async with SlowSocket(hold, seconds=seconds).running() as running:
        yield running


def held(hold: Callable[[str, str, str], bool], seconds: float) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("proxy", [(hold, seconds)], indirect=True)


@pytest.mark.parametrize("proxy", [(hold, 2.5) for hold in LATE.values()], indirect=True,
                         ids=list(LATE))
async def test_a_late_request_of_a_call_never_takes_the_caller_from_the_operator(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """The socket's thread holds one request of the call for 2.5 s, with everything behind it
    (the daemon waits 1 s for an answer): the caller's holding-bridge add, the operator's
    ring, or the call's bridge add. The daemon asks again (or, for the ring, waits for it);
    the operator's phone answers in 0.3 s. A late holding-bridge add carried out after the
    call's bridge was made would pull the caller out of it, alone in the holding bridge:
    whatever comes late, the caller ends up with the operator and stays until they hang up
    themselves."""
    daemon = await daemon_factory(logged_in=["op1"],
                                  ari={"url": proxy.url, "request_timeout": 1.0})
    op1 = await phones.operator(1, ring=0.3, talk=None)  # stays until the caller leaves
    citizen, call_id, session = await citizen_calls(daemon, phones, hold=7.0)
    await wait_for(lambda: proxy.held is not None, 10, "the late request")
    assert proxy.held is not None and call_id in proxy.held[2]
    if bridge_add(legs.is_holding)(*proxy.held):
        # Asked again, the add goes at once: the caller hears the music while the late one
        # waits, not after it (in silence).
        assert await in_holding_before(proxy.released, call_id), (
            "the caller waited in silence for their late holding-bridge add")
    await asyncio.wait_for(proxy.released.wait(), 10)
    await wait_for(lambda: session.state is CallState.CONNECTED, 15, "connected")
    # The late request was carried out before the call's bridge add (which waited for it): a
    # moment after, still with the operator, not on hold.
    await asyncio.sleep(0.5)
    async with AriClient(ari_settings()) as ari:
        bridge = await ari.get_bridge(session.bridge_id)
        assert sorted(bridge.channels) == sorted([call_id, session.operator_channel])
        assert call_id not in await holding_channels(ari)
    adds = [(uri, channels) for method, uri, channels in proxy.carried
            if uri.endswith("/addChannel") and call_id in channels.split(",")]
    assert adds[-1][0] == f"bridges/{session.bridge_id}/addChannel", adds
    # The caller talks to the end and hangs up themselves; the operator is let go.
    assert (await citizen.wait(20)).ok, "the caller was cut off"
    assert (await op1.wait(10)).ok
    detail = await record(daemon, call_id)
    assert detail.call.operator == "op1"
    assert detail.call.disposition == Disposition.GENUINE.value


@held(operator_ring, 6.0)
async def test_a_ring_late_past_the_time_it_would_ring_is_hung_up_and_rung_again(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """The operator's ring is held on the socket for 6 s: longer than the request timeout
    (1 s) and the ring (2 s) together. At 4 s the daemon takes it as not rung: it hangs the
    leg up (the hang-up waits for the late dial, so it is made and then hung up, not rung on
    after it), the caller keeps their place, and op1, paused by nobody, is rung again a moment
    later and answers. The caller talks to op1 until they hang up themselves."""
    daemon = await daemon_factory(logged_in=["op1"], queue={"ring_timeout": 2.0},
                                  ari={"url": proxy.url, "request_timeout": 1.0})
    op1 = await phones.operator(1, ring=0.3, talk=None, calls=2)
    citizen, call_id, session = await citizen_calls(daemon, phones, hold=12.0)
    first = legs.operator_leg(call_id, "op1", 1)
    await asyncio.wait_for(proxy.released.wait(), 15)
    assert proxy.held is not None and proxy.held[2] == first
    await wait_for(lambda: session.state is CallState.CONNECTED, 15, "connected")
    assert session.operator_channel == legs.operator_leg(call_id, "op1", 2)
    async with AriClient(ari_settings()) as ari:
        bridge = await ari.get_bridge(session.bridge_id)
        assert sorted(bridge.channels) == sorted([call_id, session.operator_channel])
        assert first not in {c.id for c in await ari.channels()}
    # The late dial reached Asterisk before the hang-up of its leg.
    carried = [(method, uri) for method, uri, _ in proxy.carried]
    assert carried.index(("POST", "channels")) < carried.index(("DELETE", f"channels/{first}"))
    assert (await citizen.wait(30)).ok, "the caller was cut off"
    phone = await op1.wait(10)
    assert phone.ok, phone.explain()
    assert phone.stats is not None and phone.stats.created == 2  # rung twice, no more
    detail = await record(daemon, call_id)
    assert detail.call.operator == "op1"
    assert detail.call.disposition == Disposition.GENUINE.value
    desk_op1 = daemon.desk.get("op1")
    assert desk_op1 is not None and desk_op1.state is not OperatorState.PAUSED


async def citizen_calls(daemon: Any, phones: Any, hold: float) -> tuple[Any, str, Any]:
    """A citizen who calls 112, talks and hangs up `hold` s after the answer: (their phone,
    the call id, its session)."""
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=hold,
                                   audio=phones.pcaps.speech(int(hold) - 2))
    call_id = await call_of(daemon, e164(number))
    return citizen, call_id, daemon.stasis.sessions[call_id]


async def police_asked_for(daemon: Any, phones: Any, hold: float) -> tuple[Any, str, Any]:
    """A citizen talking to op1 (who stays until the call ends), and op1 asking for the
    police (agency 02) as *202 would: (the citizen's phone, the call id, its session)."""
    await phones.operator(1, ring=0.2, talk=None)
    citizen, call_id, session = await citizen_calls(daemon, phones, hold)
    await wait_for(lambda: session.state is CallState.CONNECTED, 10, "connected")
    status, answer = await api_post(f"/calls/{call_id}/agencies", {"agency": "02"})
    assert (status, answer["result"]) == (202, "dialling"), answer
    return citizen, call_id, session


def agency_ring(method: str, uri: str, channel_id: str) -> bool:
    return method == "POST" and uri == "channels" and "-ag-" in channel_id


@held(agency_ring, 2.5)
async def test_a_duty_line_rung_late_joins_the_call_and_its_fallback_is_not_rung(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """The dial of the police's duty line is held on the socket for 2.5 s (the daemon waits
    1 s). The late ring is the dispatch's: the duty officer answers it and joins citizen and
    operator, and the fallback line is not rung. (Once, the line was given up at the
    timeout, the fallback rung, and the officer who answered the late ring hung up on.)"""
    daemon = await daemon_factory(logged_in=["op1"],
                                  ari={"url": proxy.url, "request_timeout": 1.0})
    duty = await phones.agency("02", ring=0.3)
    citizen, call_id, session = await police_asked_for(daemon, phones, hold=9.0)
    channel = await joined(session, "02")
    assert proxy.held is not None and proxy.held[2] == channel == legs.agency_leg(
        call_id, "02", 0, 1)
    await bridge_holds(call_id, {call_id, session.operator_channel, channel},
                       "citizen, operator and the duty officer in the call's bridge")
    assert (await citizen.wait(20)).ok, "the caller was cut off"
    officer = await duty.wait(10)
    assert len(officer.events("invite")) == 1
    assert officer.events("bye_received") and not officer.events("bye_sent"), (
        "the officer stays on the call until it ends")
    detail = await record(daemon, call_id)
    steps = [(e.type, e.data.get("line")) for e in detail.events if e.type.startswith("agency")]
    assert steps == [("agency_requested", None), ("agency_joined", "PJSIP/agency02")], steps


async def reconnecting_daemon(daemon_factory: Any, proxy: SlowSocket, **overrides: Any) -> Any:
    """A daemon (op1 logged in) through the proxy, quick to reconnect its events socket."""
    return await daemon_factory(logged_in=["op1"], ari={
        "url": proxy.url, "reconnect_initial": 0.2, "reconnect_max": 0.5}, **overrides)


async def op1_ringing(daemon_factory: Any, proxy: SlowSocket, phones: Any, hold: float,
                      calls: int = 1) -> tuple[Any, Any, Any, str, Any]:
    """A citizen whose call rings op1's desk phone (which answers after 2 s, `calls` times):
    (daemon, op1's phone, the citizen's phone, the call id, its session)."""
    daemon = await reconnecting_daemon(daemon_factory, proxy)
    op1 = await phones.operator(1, ring=2.0, talk=None, calls=calls)
    citizen, call_id, session = await citizen_calls(daemon, phones, hold)
    await wait_for(lambda: session.state is CallState.RINGING_OPERATOR, 10, "ringing op1")
    return daemon, op1, citizen, call_id, session


async def test_a_duty_line_that_rang_out_while_the_socket_was_down_gives_way_to_its_fallback(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """The events socket breaks for 4 s just as police's duty line is dialled; the line rings
    out (2 s) meanwhile, and its end is lost with the socket. On reconnect the resync finds
    the leg gone and rings the fallback line, which answers and joins the call. (Before, the
    dispatch stayed "dialling" for good: the fallback was never rung, and an operator who
    hung up left the citizen with nobody in the bridge.)"""
    daemon = await reconnecting_daemon(daemon_factory, proxy, agency={"answer_timeout": 2})
    duty = await phones.agency_noanswer("02")
    fallback = await phones.agency("02", fallback=True, ring=0.2)
    citizen, call_id, session = await police_asked_for(daemon, phones, hold=10.0)
    await proxy.drop(4.0)
    channel = await joined(session, "02")  # within 15 s
    assert legs.parse(channel).line == 1, "the fallback line took the call"
    await bridge_holds(call_id, {call_id, session.operator_channel, channel},
                       "citizen, operator and the fallback line in the call's bridge")
    assert (await citizen.wait(25)).ok, "the caller was cut off"
    assert len((await duty.wait(5)).events("invite")) == 1
    assert (await fallback.wait(5)).events("bye_received")
    detail = await record(daemon, call_id)
    steps = [(e.type, e.data.get("line"), e.data.get("reason"))
             for e in detail.events if e.type.startswith("agency")]
    assert steps == [("agency_requested", None, None),
                     ("agency_line_failed", "PJSIP/agency02",
                      "gone while we were away"),
                     ("agency_joined", "PJSIP/agency02-fb", None)], steps


async def test_an_operator_who_answered_while_the_socket_was_down_is_put_through(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """op1's desk phone rings for 2 s; as it starts ringing the events socket goes half-open
    for 4 s (Asterisk's events are lost, the application stays active), so the answer's
    StasisStart is lost; then the daemon's socket closes and it reconnects. The resync finds
    op1's leg up and puts the caller through. (Before, op1 sat in silence on an answered call
    and the caller waited in the holding bridge for good.)"""
    daemon, op1, citizen, call_id, session = await op1_ringing(daemon_factory, proxy, phones,
                                                               hold=9.0)
    await proxy.black_hole(4.0)
    await wait_for(lambda: session.state is CallState.CONNECTED, 10, "connected")
    async with AriClient(ari_settings()) as ari:
        bridge = await ari.get_bridge(session.bridge_id)
        assert sorted(bridge.channels) == sorted([call_id, session.operator_channel])
    assert (await citizen.wait(20)).ok, "the caller was cut off"
    phone = await op1.wait(10)
    assert phone.ok and len(phone.events("invite")) == 1, phone.explain()
    detail = await record(daemon, call_id)
    assert detail.call.operator == "op1"
    assert detail.call.disposition == Disposition.GENUINE.value


async def test_a_duty_line_that_answered_while_the_socket_was_down_joins_the_call(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """Police's duty line rings 2 s; the events socket is half-open for 4 s from the dial, so
    the officer's answer is lost. The resync finds the leg up and joins it to the call."""
    daemon = await reconnecting_daemon(daemon_factory, proxy)
    duty = await phones.agency("02", ring=2.0)
    citizen, call_id, session = await police_asked_for(daemon, phones, hold=9.0)
    await proxy.black_hole(4.0)
    channel = await joined(session, "02")
    assert channel == legs.agency_leg(call_id, "02", 0, 1)
    await bridge_holds(call_id, {call_id, session.operator_channel, channel},
                       "citizen, operator and the duty officer in the call's bridge")
    assert (await citizen.wait(20)).ok, "the caller was cut off"
    assert (await duty.wait(10)).events("bye_received")
    detail = await record(daemon, call_id)
    steps = [(e.type, e.data.get("line")) for e in detail.events if e.type.startswith("agency")]
    assert steps == [("agency_requested", None), ("agency_joined", "PJSIP/agency02")], steps


async def test_an_operator_who_answered_while_the_application_was_away_is_rung_again(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """The events socket closes as op1's phone starts ringing and is refused for 4 s: with our
    application away, Asterisk hangs up the leg op1 answers at 2 s (Stasis app not active),
    and op1's phone hears the call end. Nobody's fault that op1 could see: op1 is not paused,
    the caller keeps their place and, after the reconnect, op1 is rung again and answers."""
    daemon, op1, citizen, call_id, session = await op1_ringing(daemon_factory, proxy, phones,
                                                               hold=11.0, calls=2)
    await proxy.drop(4.0)
    await wait_for(lambda: session.state is CallState.CONNECTED, 15, "connected")
    assert session.operator_channel == legs.operator_leg(call_id, "op1", 2)
    desk_op1 = daemon.desk.get("op1")
    assert desk_op1 is not None and desk_op1.state is not OperatorState.PAUSED
    assert (await citizen.wait(25)).ok, "the caller was cut off"
    phone = await op1.wait(10)
    assert phone.ok and len(phone.events("invite")) == 2, phone.explain()
    detail = await record(daemon, call_id)
    assert (detail.call.operator, detail.call.disposition) == ("op1", Disposition.GENUINE.value)
    assert "operator_no_answer" not in [e.type for e in detail.events]


async def test_an_operator_who_hung_up_while_the_socket_was_down_has_their_wrap_up(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """op1 talks to the caller for 6 s and hangs up 1 s into a 4 s break of the events
    socket; the caller stays on. On reconnect the caller goes back to the front of the queue
    (whether op1 meant to end the call is not known) and rings op2, who logged in during the
    call; op1 is in wrap-up (10 s) and not rung. (Before, the resync forgot op1's call: op1
    was free at once, the longest idle, and the caller was put straight back to the operator
    who had just hung up, before their report was written.)"""
    talk = 6.0
    daemon = await daemon_factory(logged_in=["op1"], queue={"wrapup": 10}, ari={
        "url": proxy.url, "reconnect_initial": 0.2, "reconnect_max": 0.5})
    op1 = await phones.operator(1, ring=0.2, talk=talk, calls=None)
    op2 = await phones.operator(2, ring=0.2, talk=None, calls=None)
    citizen, call_id, session = await citizen_calls(daemon, phones, hold=20.0)
    op1_answered = await logged(op1, "answered", 10)
    await wait_for(lambda: session.state is CallState.CONNECTED, 10, "connected to op1")
    code = await phones.code(2, "*11")
    assert code.ok, code.explain()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, op1_answered + talk - 1.0 - loop.time()))
    assert not [e for e in op1.logs() if e.event == "bye_sent"], "set-up took too long"
    await proxy.drop(4.0)
    await logged(op1, "bye_sent", 5)  # op1 hangs up: the socket is down
    await wait_for(lambda: session.state is CallState.CONNECTED and session.operator == "op2",
                   15, "the caller put through to op2 after the reconnect")
    desk_op1 = daemon.desk.get("op1")
    assert desk_op1 is not None and desk_op1.state is OperatorState.WRAPUP, desk_op1
    assert (await citizen.wait(25)).ok, "the caller was cut off"
    number = [e.fields.get("caller") for e in citizen.logs() if e.event == "answered"][0]
    assert invites(op1) == [e164(number)], "op1 rung again at once"
    assert invites(op2) == [e164(number)]
    detail = await record(daemon, call_id)
    # (The record's operator is the first who answered.)
    assert (detail.call.operator, detail.call.disposition) == ("op1", Disposition.GENUINE.value)
    connected = [e.data.get("operator") for e in detail.events if e.type == "connected"]
    assert connected == ["op1", "op2"], [e.type for e in detail.events]
    assert any(e.type == "requeued" and e.data.get("reason") == "operator_gone"
               for e in detail.events), [e.type for e in detail.events]


async def test_an_operator_in_wrap_up_when_the_socket_breaks_stays_in_it(
        proxy: SlowSocket, daemon_factory, phones) -> None:
    """The other instant of the same break: op1's call has ended (the caller hung up) and op1
    is 0.5 s into a 9 s wrap-up when the events socket breaks for 4 s. The reconnect's
    resync keeps op1's wrap-up: the next caller, arriving just after it with op1 the only
    operator, waits in the queue and rings op1 only when the wrap-up is over. (Before, the
    resync made op1 free at once and that caller was put straight through.)"""
    wrapup = 9.0
    daemon = await daemon_factory(logged_in=["op1"], queue={"wrapup": wrapup}, ari={
        "url": proxy.url, "reconnect_initial": 0.2, "reconnect_max": 0.5})
    op1 = await phones.operator(1, ring=0.2, talk=None, calls=None)
    first, first_id, session = await citizen_calls(daemon, phones, hold=4.0)
    await wait_for(lambda: session.state is CallState.CONNECTED, 10, "connected to op1")
    ended = await logged(first, "bye_sent", 15)  # the caller hangs up: op1's wrap-up begins
    await wait_for(lambda: daemon.desk.get("op1").state is OperatorState.WRAPUP, 5,
                   "op1 in wrap-up")
    await asyncio.sleep(0.5)
    await proxy.drop(4.0)
    # (Set by each resync when it is done; cleared here so that the wait below is the
    # reconnect's, not the first connect's.)
    daemon.stasis.resynced.clear()
    await wait_for(daemon.stasis.resynced.is_set, 15, "the reconnect's resync")
    desk_op1 = daemon.desk.get("op1")
    assert desk_op1 is not None and desk_op1.state is OperatorState.WRAPUP, desk_op1
    second, second_id, second_session = await citizen_calls(daemon, phones, hold=wrapup - 1.0)
    rung = await logged(op1, "invite", wrapup + 5, n=2)
    assert rung - ended >= wrapup - 0.5, (
        f"op1 rung {rung - ended:.1f} s after the call ended, inside a {wrapup:.0f} s wrap-up")
    await wait_for(lambda: second_session.state is CallState.CONNECTED, 10, "connected to op1")
    assert (await first.wait(5)).ok
    assert (await second.wait(25)).ok, "the second caller was cut off"
    detail = await record(daemon, second_id)
    assert (detail.call.operator, detail.call.disposition) == ("op1", Disposition.GENUINE.value)
    assert (await record(daemon, first_id)).call.operator == "op1"
