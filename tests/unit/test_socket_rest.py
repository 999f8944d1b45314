"""ARI requests over the events websocket (ari/socket_rest.py), against a small stand-in for
Asterisk: an aiohttp server with the events websocket (answering RESTRequest messages as
Asterisk 22 does, and sending events) and the same resources over HTTP. The real Asterisk
carries every integration test's requests this way (tests/integration/test_call_path.py checks
that it does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from tests.conftest import serving, wait_for

from siaga112.ari.client import AriClient, NotFound, Unreachable
from siaga112.ari.events import EventStream
from siaga112.ari.models import AriEvent
from siaga112.ari.socket_rest import PROBES, SocketRest
from siaga112.settings import AriSettings


@dataclass
class FakePbx:
    """What the stand-in saw and how it behaves."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)  # over the socket
    http: list[str] = field(default_factory=list)  # "METHOD path?query" over HTTP
    mode: str = "answer"  # answer | silent (an Asterisk before 22.4) | close | garbage
    delay: float = 0.0  # s before each socket answer; the socket's requests one at a time
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    carried: list[str] = field(default_factory=list)  # "METHOD uri", socket's and HTTP's

    def resource(self, method: str, uri: str, query: dict[str, str]) -> tuple[int, str]:
        self.carried.append(f"{method} {uri}")
        if uri == "asterisk/ping" and method == "GET":
            return 200, json.dumps({"ping": "pong"})
        if uri == "asterisk/variable" and method == "GET":
            return 200, json.dumps({"value": self.variables.get(query["variable"], "")})
        if uri == "asterisk/variable" and method == "POST":
            self.variables[query["variable"]] = query["value"]
            return 204, ""
        if method == "GET" and uri in ("channels", "bridges", "endpoints/PJSIP"):
            return 200, "[]"
        if method == "GET" and uri.startswith("applications/"):
            return 200, json.dumps({"name": uri.split("/")[1]})
        if uri.endswith("/eventFilter") and method == "PUT":
            return 200, json.dumps({"name": uri.split("/")[1]})
        return 404, json.dumps({"message": "Channel not found"})


@pytest.fixture
async def pbx() -> AsyncIterator[FakePbx]:
    fake = FakePbx()

    async def events(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        fake.sockets.append(ws)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            req = json.loads(msg.data)
            fake.requests.append(req)
            if fake.mode == "silent":
                continue
            if fake.mode == "close":
                await ws.close()
                break
            if fake.delay:  # Asterisk's one thread for the socket, starved of CPU
                await asyncio.sleep(fake.delay)
            query = {q["name"]: q["value"] for q in req.get("query_strings", [])}
            status, body = fake.resource(req["method"], req["uri"], query)
            answer: dict[str, Any] = {"type": "RESTResponse", "request_id": req["request_id"],
                                      "status_code": status, "uri": req["uri"]}
            if fake.mode == "garbage":
                answer["status_code"] = "two hundred"
            if body:
                answer |= {"content_type": "application/json", "message_body": body}
            await ws.send_str(json.dumps(answer))
        return ws

    async def rest(request: web.Request) -> web.Response:
        fake.http.append(f"{request.method} {request.path_qs}")
        status, body = fake.resource(request.method, request.match_info["uri"],
                                     dict(request.query))
        return web.Response(status=status, text=body or None,
                            content_type="application/json" if body else None)

    app = web.Application()
    app.router.add_get("/ari/events", events)
    app.router.add_route("*", "/ari/{uri:.+}", rest)
    async with serving(app) as base:
        fake.url = f"{base}/ari"
        yield fake


@dataclass
class Connected:
    ari: AriClient
    rest: SocketRest
    events: list[AriEvent]
    observed: list[tuple[str, str]]  # (method, via)
    stream: EventStream
    task: asyncio.Task[None]


@pytest.fixture
async def connected(pbx: FakePbx) -> AsyncIterator[Connected]:
    async with connect(pbx, 0.5) as c:
        yield c


@contextlib.asynccontextmanager
async def connect(pbx: FakePbx, request_timeout: float) -> AsyncIterator[Connected]:
    settings = AriSettings(url=pbx.url, request_timeout=request_timeout, reconnect_initial=0.05,
                           reconnect_max=0.05)
    rest = SocketRest(settings.request_timeout)
    events: list[AriEvent] = []
    observed: list[tuple[str, str]] = []

    async def on_connect() -> None:
        return None

    stream = EventStream(settings, on_event=events.append, on_connect=on_connect, rest=rest)
    ari = AriClient(settings, observe=lambda m, _s, via: observed.append((m, via)),
                    socket=rest)
    task = asyncio.create_task(stream.run())
    await asyncio.wait_for(stream.connected.wait(), 5)
    await wait_for(lambda: rest.attached, 5)
    assert pbx.requests == [{"type": "RESTRequest", "request_id": "1", "method": "GET",
                             "uri": "asterisk/ping"}]  # the socket's first request
    pbx.requests.clear()
    try:
        yield Connected(ari, rest, events, observed, stream, task)
    finally:
        stream.stop()
        for ws in pbx.sockets:
            await ws.close()
        await asyncio.wait_for(task, 5)
        await ari.close()


async def test_requests_go_over_the_socket_with_their_query_and_body(
        pbx: FakePbx, connected: Connected) -> None:
    await connected.ari.set_global("SIAGA112_X", "a b&c=d")
    assert await connected.ari.get_global("SIAGA112_X") == "a b&c=d"
    await connected.ari.filter_events("siaga112", ["ChannelVarset"])

    assert pbx.http == []
    sent = pbx.requests[0]
    assert (sent["type"], sent["method"], sent["uri"]) == ("RESTRequest", "POST",
                                                            "asterisk/variable")
    assert sent["query_strings"] == [{"name": "variable", "value": "SIAGA112_X"},
                                     {"name": "value", "value": "a b&c=d"}]
    put = pbx.requests[2]
    assert put["content_type"] == "application/json"
    assert json.loads(put["message_body"]) == {"disallowed": [{"type": "ChannelVarset"}]}
    assert len({r["request_id"] for r in pbx.requests}) == 3
    assert connected.observed == [("POST", "socket"), ("GET", "socket"), ("PUT", "socket")]


async def test_listings_go_over_http_with_the_socket_up(pbx: FakePbx,
                                                        connected: Connected) -> None:
    """Asterisk 22.10 crashes sending a megabyte's answer on the socket (a listing of every
    channel in a burst did): an answer as large as the PBX is busy always comes over HTTP."""
    assert await connected.ari.channels() == []
    assert await connected.ari.bridges() == []
    assert await connected.ari.endpoints() == []
    assert (await connected.ari.application("siaga112")).name == "siaga112"
    assert pbx.requests == []
    assert pbx.http == ["GET /ari/channels", "GET /ari/bridges", "GET /ari/endpoints/PJSIP",
                        "GET /ari/applications/siaga112"]
    assert await connected.ari.get_global("SIAGA112_X") == ""  # one resource: the socket
    assert [r["uri"] for r in pbx.requests] == ["asterisk/variable"]


async def test_an_error_over_the_socket_is_the_same_typed_error(connected: Connected) -> None:
    with pytest.raises(NotFound, match="Channel not found"):
        await connected.ari.hangup("gone-1")


async def test_requests_in_flight_answered_out_of_order(pbx: FakePbx,
                                                        connected: Connected) -> None:
    pbx.variables = {f"V{i}": str(i) for i in range(20)}
    got = await asyncio.gather(*(connected.ari.get_global(f"V{i}") for i in range(20)))
    assert got == [str(i) for i in range(20)]


async def test_without_a_socket_requests_go_over_http(pbx: FakePbx) -> None:
    settings = AriSettings(url=pbx.url)
    rest = SocketRest(settings.request_timeout)  # never attached: the socket is not up
    observed: list[str] = []
    async with AriClient(settings, observe=lambda _m, _s, via: observed.append(via),
                         socket=rest) as ari:
        await ari.set_global("SIAGA112_X", "1")
        assert await ari.get_global("SIAGA112_X") == "1"
    assert pbx.http == ["POST /ari/asterisk/variable?variable=SIAGA112_X&value=1",
                        "GET /ari/asterisk/variable?variable=SIAGA112_X"]
    assert pbx.requests == []
    assert observed == ["http", "http"]


async def test_the_socket_closing_fails_the_request_in_flight_then_http_carries_them(
        pbx: FakePbx, connected: Connected) -> None:
    pbx.mode = "close"  # Asterisk restarts with our request in flight
    with pytest.raises(Unreachable, match="events socket closed"):
        await connected.ari.set_global("SIAGA112_X", "1")
    assert connected.observed[-1] == ("POST", "socket")
    # Until the socket is back, HTTP carries the requests; then the socket does again.
    assert not connected.rest.attached
    await connected.ari.set_global("SIAGA112_X", "2")
    assert pbx.http == ["POST /ari/asterisk/variable?variable=SIAGA112_X&value=2"]
    pbx.mode = "answer"
    await wait_for(lambda: connected.rest.attached, 5)  # connected again, and it answered
    await connected.ari.set_global("SIAGA112_X", "2")
    assert pbx.variables["SIAGA112_X"] == "2"
    assert pbx.requests[-1]["query_strings"][1] == {"name": "value", "value": "2"}


@pytest.mark.parametrize(("mode", "error"), [("silent", "no answer within 0.5 s"),
                                           ("garbage", "malformed")])
async def test_a_request_unanswered_or_answered_out_of_shape_is_unreachable(
        pbx: FakePbx, connected: Connected, mode: str, error: str) -> None:
    pbx.mode = mode
    with pytest.raises(Unreachable, match=error):
        await connected.ari.get_global("SIAGA112_X")
    pbx.mode = "answer"  # that request only: the next is answered
    pbx.variables["SIAGA112_X"] = "ok"
    assert await connected.ari.get_global("SIAGA112_X") == "ok"
    assert len(pbx.sockets) == 1
    # Over the same socket after a malformed answer; over HTTP while a request that got none
    # may still be waiting in the socket's queue (the next test).
    assert connected.observed[-1] == ("GET", "http" if mode == "silent" else "socket")


async def test_a_socket_behind_on_its_answers_hands_new_requests_to_http_until_it_caught_up(
        pbx: FakePbx, connected: Connected) -> None:
    """A flood starves Asterisk's one thread for the socket: answers come, late and in order.
    Asking again on the socket would queue behind the request still waiting there."""
    pbx.delay = 1.5  # over the 0.5 s timeout: the late answer 1 s after it
    with pytest.raises(Unreachable, match="no answer within 0.5 s"):
        await connected.ari.set_global("SIAGA112_X", "1")
    assert connected.rest.behind
    pbx.variables["SIAGA112_Y"] = "y"
    assert await connected.ari.get_global("SIAGA112_Y") == "y"  # asked again: over HTTP
    assert connected.observed[-2:] == [("POST", "socket"), ("GET", "http")]
    assert pbx.http == ["GET /ari/asterisk/variable?variable=SIAGA112_Y"]
    # The late answer comes (the request was carried out, as Asterisk does): the socket has
    # caught up and carries the next request again.
    for stray in ("²", "9" * 5000, "-1"):  # answers to no request of ours change nothing
        connected.rest.answered({"type": "RESTResponse", "request_id": stray})
    assert connected.rest.behind
    await wait_for(lambda: not connected.rest.behind, 5, "the late answer")
    assert pbx.variables["SIAGA112_X"] == "1"
    pbx.delay = 0.0
    assert await connected.ari.get_global("SIAGA112_X") == "1"
    assert connected.observed[-1] == ("GET", "socket")
    assert len(pbx.requests) == 2 and len(pbx.http) == 1


async def test_a_calls_requests_keep_their_order_while_the_socket_is_behind(
        pbx: FakePbx) -> None:
    """Over HTTP, a request could be carried out before an earlier one of the same call still
    waiting in the socket's queue: a caller's late holding-bridge add carried out after the
    call's bridge with the operator was made would pull the caller away from the operator.
    The same caller's next request waits for the late answer; other callers' requests, and
    the caller's own hand-back, go at once."""
    async with connect(pbx, 1.0) as c:
        pbx.delay = 1.5  # the late answer comes 0.5 s after the timeout
        with pytest.raises(Unreachable, match="no answer within 1 s"):
            await c.ari.add_to_bridge("hold-1", "caller-1", role="participant")
        assert c.rest.behind
        pbx.delay = 0.0  # (the late one is on its way)
        bridged = asyncio.create_task(c.ari.add_to_bridge("call-1", ["caller-1", "op-1"]))
        with pytest.raises(NotFound):  # the stand-in knows no channel: 404 once carried out
            await c.ari.ring("caller-2")
        with pytest.raises(NotFound):
            await c.ari.continue_in_dialplan("caller-1")
        assert not bridged.done()
        with pytest.raises(NotFound):
            await bridged
        assert [r for r in pbx.carried if "ping" not in r] == [
            "POST channels/caller-2/ring", "POST channels/caller-1/continue",
            "POST bridges/hold-1/addChannel", "POST bridges/call-1/addChannel"]
        assert c.observed == [("POST", "socket"), ("POST", "http"), ("POST", "http"),
                              ("POST", "socket")]  # caught up: the socket carried it


async def test_a_bridge_add_asked_again_does_not_wait_for_its_own_late_self(
        pbx: FakePbx) -> None:
    """A caller's holding-bridge add late on the socket, asked again: in either order the
    caller ends in the holding bridge, so the second goes at once (the caller hears the
    music now, not after a 5 s wait in silence). The call's bridge add still waits for it."""
    async with connect(pbx, 1.0) as c:
        pbx.delay = 1.5
        with pytest.raises(Unreachable, match="no answer within 1 s"):
            await c.ari.add_to_bridge("hold-1", "caller-1", role="participant")
        pbx.delay = 0.0
        with pytest.raises(NotFound):  # at once, over HTTP
            await c.ari.add_to_bridge("hold-1", "caller-1", role="participant")
        assert [r for r in pbx.carried if "ping" not in r] == ["POST bridges/hold-1/addChannel"]
        with pytest.raises(NotFound):  # another bridge: after the late one
            await c.ari.add_to_bridge("call-1", ["caller-1", "op-1"])
        assert [r for r in pbx.carried if "ping" not in r] == [
            "POST bridges/hold-1/addChannel", "POST bridges/hold-1/addChannel",
            "POST bridges/call-1/addChannel"]
        assert c.observed == [("POST", "socket"), ("POST", "http"), ("POST", "socket")]


async def test_a_hang_up_waits_for_its_channels_late_creation(pbx: FakePbx) -> None:
    """A hang-up goes at once while the socket is behind, except that of a leg whose dial
    (an originate with its id) is itself late: sent before it, the hang-up would find no
    channel, and the dial, carried out after it, would ring the operator's phone for nothing."""
    async with connect(pbx, 1.0) as c:
        pbx.delay = 1.5
        with pytest.raises(Unreachable, match="no answer within 1 s"):
            await c.ari.originate("PJSIP/op1", "call-1-op-op1-1", "siaga112", "operator,call-1")
        pbx.delay = 0.0
        hung_up = asyncio.create_task(c.ari.hangup("call-1-op-op1-1"))
        with contextlib.suppress(NotFound):
            await c.ari.hangup("call-2")  # another channel's hang-up: at once
        with contextlib.suppress(NotFound):
            await c.ari.continue_in_dialplan("call-1")  # the caller's hand-back: at once
        assert not hung_up.done()
        with contextlib.suppress(NotFound):
            await hung_up
        assert [r for r in pbx.carried if "ping" not in r] == [
            "DELETE channels/call-2", "POST channels/call-1/continue", "POST channels",
            "DELETE channels/call-1-op-op1-1"]


async def test_a_calls_request_is_not_sent_while_its_late_one_stays_unanswered(
        pbx: FakePbx) -> None:
    """The wait is bounded: past the request timeout the request fails unanswered (it is
    asked again as after any timeout) and was not carried out."""
    async with connect(pbx, 0.5) as c:
        pbx.delay = 2.0
        with pytest.raises(Unreachable, match="no answer within 0.5 s"):
            await c.ari.play("caller-1", "sound:x", playback_id="caller-1-blocked")
        # The look whether it plays, then the caller's next request: neither is sent.
        with pytest.raises(Unreachable, match="an earlier request about playback:caller-1-"):
            await c.ari.get_playback("caller-1-blocked")
        with pytest.raises(Unreachable, match="an earlier request about channel:caller-1 "):
            await c.ari.add_to_bridge("hold-1", "caller-1", role="participant")
        assert [r for r in pbx.carried if "ping" not in r] == []
        await wait_for(lambda: not c.rest.behind, 5, "the late answer")
        assert [r for r in pbx.carried if "ping" not in r] == ["POST channels/caller-1/play"]
        pbx.delay = 0.0
        with pytest.raises(NotFound):  # carried out now, over the socket
            await c.ari.get_playback("caller-1-blocked")
        assert c.observed[-1] == ("GET", "socket")


async def test_a_late_answer_that_never_comes_is_forgotten(pbx: FakePbx) -> None:
    rest = SocketRest(0.2, forget_after=0.5)
    settings = AriSettings(url=pbx.url, request_timeout=0.2)

    async def on_connect() -> None:
        return None

    stream = EventStream(settings, on_event=lambda _e: None, on_connect=on_connect, rest=rest)
    task = asyncio.create_task(stream.run())
    try:
        await wait_for(lambda: rest.attached, 5, "the socket")
        async with AriClient(settings, socket=rest) as ari:
            pbx.mode = "silent"
            with pytest.raises(Unreachable, match="no answer within 0.2 s"):
                await ari.get_global("SIAGA112_X")
            assert rest.behind
            await asyncio.sleep(0.6)
            assert not rest.behind  # forgotten: the socket is tried again
            pbx.mode = "answer"
            assert await ari.get_global("SIAGA112_X") == ""
            assert [r["uri"] for r in pbx.requests][-1] == "asterisk/variable"
            assert pbx.http == []
    finally:
        stream.stop()
        for ws in pbx.sockets:
            await ws.close()
        await asyncio.wait_for(task, 5)


async def test_events_still_arrive_and_a_callers_name_cannot_pose_as_an_answer(
        pbx: FakePbx, connected: Connected) -> None:
    ws = pbx.sockets[-1]
    # A caller ID name "RESTResponse" puts that word in quotes in the event's JSON.
    event = {"type": "StasisStart", "application": "siaga112", "args": [],
             "channel": {"id": "c-1", "name": "PJSIP/trunk-1", "state": "Up",
                         "caller": {"name": "RESTResponse", "number": "08123"}}}
    await ws.send_str(json.dumps(event))
    # An answer to no request of ours (it came after its timeout) is dropped quietly.
    await ws.send_str(json.dumps({"type": "RESTResponse", "request_id": "999",
                                  "status_code": 200}))
    await wait_for(lambda: bool(connected.events), 5)
    assert [e.type for e in connected.events] == ["StasisStart"]
    pbx.variables["SIAGA112_X"] = "still"
    assert await connected.ari.get_global("SIAGA112_X") == "still"


async def test_an_asterisk_that_does_not_answer_over_the_socket_gets_http(pbx: FakePbx) -> None:
    """Before 22.4 (21.9, 20.14) Asterisk does not answer requests on the events socket."""
    pbx.mode = "silent"
    settings = AriSettings(url=pbx.url, request_timeout=0.2, reconnect_initial=0.05,
                           reconnect_max=0.05)
    rest = SocketRest(settings.request_timeout)

    async def on_connect() -> None:
        return None

    stream = EventStream(settings, on_event=lambda _e: None, on_connect=on_connect, rest=rest)
    task = asyncio.create_task(stream.run())
    try:
        for probe in range(1, PROBES + 1):  # one probe a connection, each unanswered
            await wait_for(partial(lambda n: len(pbx.requests) == n, probe), 5, "a probe")
            await asyncio.sleep(0.3)
            assert not rest.attached
            assert not rest.behind  # a probe carries nothing behind it: no log line either
            if probe < PROBES:
                await pbx.sockets[-1].close()
        assert rest.unsupported
        async with AriClient(settings, socket=rest) as ari:
            await ari.set_global("SIAGA112_X", "1")
        assert pbx.http == ["POST /ari/asterisk/variable?variable=SIAGA112_X&value=1"]
        await pbx.sockets[-1].close()  # a new connection asks nothing more
        await wait_for(lambda: len(pbx.sockets) == PROBES + 1, 5)
        await asyncio.sleep(0.3)
        assert len(pbx.requests) == PROBES
        assert {r["uri"] for r in pbx.requests} == {"asterisk/ping"}
    finally:
        stream.stop()
        for ws in pbx.sockets:
            await ws.close()
        await asyncio.wait_for(task, 5)
