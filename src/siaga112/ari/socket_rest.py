"""ARI REST requests over the events websocket (Asterisk 22.4 and later), HTTP's stand-in.

Asterisk answers a `RESTRequest` message on an application's events socket with a
`RESTResponse` on the same socket (docs.asterisk.org, "ARI REST over WebSocket"). A request
over it costs the daemon about half of one over HTTP keep-alive (aiohttp's request machinery:
its request and response objects, headers, timers, the connection pool), and an ARI request
was a quarter of a call's CPU (docs/load-testing.md, ninth round).

`SocketRest` carries requests while the events socket is up: `EventStream` attaches the socket
when it connects, hands it every `RESTResponse`, and detaches it when the socket goes down.
While none is attached, `request` returns None and the client uses HTTP, so nothing depends on
this path: a call's hand-back to the dialplan works with the events socket down, as before. A
request in flight when the socket goes down, or not answered within the request timeout, fails
as an unreachable HTTP request does (`Unreachable`: it may or may not have been carried out,
and the callers that must know look, as they do after an HTTP timeout).

A socket behind on its answers hands new requests to HTTP. Asterisk reads the requests of one
events socket in one thread, one after the other (res/ari/ari_websockets.c: read, invoke, answer,
read the next), so a request that timed out there is not lost: it waits in that queue, and
asking again on the socket puts the new request behind it. `make bench` found it: a flood of
180 calls/s on a PBX still busy with app_queue's burst left the socket's answers over 5 s late;
every timed-out request was asked again on the socket (the call's own tries, the look whether
it was done, then the hand-back's), 18 requests a call instead of 4, and the hand-backs to the
dialplan waited behind them for up to three minutes. Now, from the first timeout until the
socket has answered every late request (or `forget_after` has passed since the last one: an
answer that never comes), requests go over HTTP, which Asterisk serves in a thread per
connection; then the socket carries them again.

Each call's requests keep their order all the same. Over HTTP, a request could be carried out
before an earlier one of the same call still waiting in the socket's queue, and that order
matters: `addChannel` takes a channel out of the bridge it is in (control_swap_channel_in_bridge
in res/stasis/control.c), so a caller's late holding-bridge `addChannel` carried out after the
operator's call bridge was made would pull the caller away from the operator. So while the
socket is behind, a request about a channel or playback that a late request is about waits for
that late answer (at most the request timeout, then it fails unanswered and is asked again as
any timeout is), and only then goes. Requests about other calls go at once. The hand-back to
the dialplan (`continue`) and the hang-up go at once too: they end the call's time in Stasis,
and a late request carried out after them finds the channel gone from the application. The
one exception: the hang-up of a leg whose own dial (an originate with its id) is late waits
for it, as any request would; sent before it, the hang-up finds no channel and the dial,
carried out after, rings the desk phone or duty line for nobody. And a bridge add asked again
does not wait for its own late self: in either order the channels end in that bridge, and a
caller asked into the holding bridge again hears its music at once.
Bridges are not keys: the holding bridges are shared by every waiting caller, and a call's own
bridge is reached through its channels.

Listings (every channel, every bridge, the endpoints, the application: `bulky` in client.py)
always go over HTTP: Asterisk 22.10 crashes (a segfault in res_http_websocket, a stack
overflow) sending a RESTResponse of about a megabyte on the socket. `make bench`'s burst found
it: the sweep's `GET /channels` with ~950 callers up killed the PBX. Reproduced with a listing
of 5,000 bridges (1.1 MB over HTTP); 1,500 bridges (392 KB) came back. An answer about one
channel, bridge, playback or variable is a few kilobytes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)

MAX_PENDING = 10_000  # requests in flight on one socket; past this, HTTP carries the rest
# An Asterisk without REST over the socket (before 22.4, 21.9, 20.14) does not answer the
# probe: after this many probes without an answer the daemon stays on HTTP and says so.
PROBES = 3


class SocketClosed(Exception):
    """The events socket went down with the request in flight (or timed out): like an HTTP
    request that got no answer."""


class SocketRest:
    def __init__(self, timeout: float, forget_after: float = 60.0) -> None:
        self._timeout = timeout
        self._forget_after = forget_after
        self._ws: aiohttp.ClientWebSocketResponse | None = None  # once it answered the probe
        # request id -> (its answer, its path and query: what it is about, should it be late)
        self._pending: dict[str, tuple[asyncio.Future[tuple[int, str]], str, str,
                                       dict[str, Any]]] = {}
        # Requests that timed out and may still be answered (request id -> what each is about),
        # in the order asked (one timeout for all): while any is, the socket is behind and
        # HTTP carries new requests, after the late ones about the same channel or playback.
        self._late: dict[int, tuple[str, ...]] = {}
        self._late_about: Counter[str] = Counter()
        self._progress: asyncio.Event | None = None  # set when late requests are answered
        self._behind_since = self._last_late = 0.0
        self._next = 0
        self._unanswered = 0  # probes in a row that got no answer
        self.unsupported = False  # requests stay on HTTP for good

    @property
    def attached(self) -> bool:
        return self._ws is not None

    @property
    def behind(self) -> bool:
        """A request on the socket timed out and its answer has not come yet."""
        if self._late and time.monotonic() - self._last_late > self._forget_after:
            self._caught_up("forgotten: no answer within forget_after")
        return bool(self._late)

    async def attach(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The events socket is up (run beside its reader): it carries requests once it has
        answered one."""
        if self.unsupported:
            return
        try:
            answer = await self._exchange(ws, "GET", "/asterisk/ping", {}, None, probe=True)
        except SocketClosed as exc:
            answer, why = None, str(exc)
        else:
            why = ("the socket would not take it" if answer is None
                   else f"status {answer[0]}" if answer[0] >= 400 else "")
        if not why:
            self._unanswered = 0
            if not ws.closed:
                self._ws = ws
                log.info("ari_requests_over_socket")
            return
        self._unanswered += 1
        log.warning("ari_socket_request_unanswered", reason=why, probes=self._unanswered)
        if self._unanswered >= PROBES:
            self.unsupported = True
            log.warning("ari_requests_over_http", reason="the events socket does not answer "
                        "requests (Asterisk before 22.4, 21.9 or 20.14?)")

    def detach(self) -> None:
        """The socket is down: every request in flight fails as unanswered."""
        self._ws = None
        if self._late:
            self._caught_up("the socket closed")  # a new one starts with Asterisk's queue empty
        pending, self._pending = self._pending, {}
        for fut, *_asked in pending.values():
            if not fut.done():
                fut.set_exception(SocketClosed("the events socket closed"))

    async def request(self, method: str, path: str, params: dict[str, Any],
                      body: dict[str, Any] | None) -> tuple[int, str] | None:
        """(status, body) from Asterisk; None: no socket to carry it (use HTTP). Raises
        SocketClosed when it was sent and no answer came, or when a late request about the
        same channel or playback was not answered within the timeout (this one not sent)."""
        if self._late:
            # The hand-back and the hang-up go at once, unless the channel's own creation is
            # late: hung up before it is made, the leg would be made after all and ring.
            await self._after_late(_made_first(method, path) if _ends_stasis(method, path)
                                   else touches(method, path, params))
        ws = self._ws
        if ws is None or ws.closed or len(self._pending) >= MAX_PENDING or self.behind:
            return None
        return await self._exchange(ws, method, path, params, body)

    async def _exchange(self, ws: aiohttp.ClientWebSocketResponse, method: str, path: str,
                        params: dict[str, Any], body: dict[str, Any] | None,
                        probe: bool = False) -> tuple[int, str] | None:
        """probe: the socket's first request; it carries nothing else until that is answered,
        so a probe without an answer does not make the socket behind (an Asterisk before 22.4
        never answers it)."""
        self._next += 1
        request_id = str(self._next)
        message: dict[str, Any] = {
            "type": "RESTRequest", "request_id": request_id, "method": method,
            "uri": path.lstrip("/"),
        }
        if params:
            message["query_strings"] = [{"name": k, "value": str(v)} for k, v in params.items()]
        if body is not None:
            message["content_type"] = "application/json"
            message["message_body"] = json.dumps(body)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._pending[request_id] = (fut, method, path, params)
        try:
            await ws.send_str(json.dumps(message))
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            # Not sent (the socket is closing): nothing was asked of Asterisk; HTTP carries it.
            self._pending.pop(request_id, None)
            return None
        timer = loop.call_later(self._timeout, self._expire, request_id, probe)
        try:
            return await fut
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
    def _expire(self, request_id: str, probe: bool = False) -> None:
        asked = self._pending.pop(request_id, None)
        if asked is None or asked[0].done():
            return
        fut, method, path, params = asked
        if not probe:
            if not self._late:
                self._behind_since = time.monotonic()
                log.warning("ari_socket_behind", request_id=request_id, timeout=self._timeout,
                            pending=len(self._pending))
            about = touches(method, path, params)
            self._late[int(request_id)] = about
            self._late_about.update(about)
            self._last_late = time.monotonic()
        fut.set_exception(SocketClosed(f"no answer within {self._timeout:g} s"))

    async def _after_late(self, about: tuple[str, ...]) -> None:
        """Wait until no late request is about any of `about` (the call's order kept); raise
        SocketClosed when one still is after the request timeout. A bridge add asked again
        does not wait for its own late self: carried out in either order, the channels end
        in that bridge (a caller's holding-bridge add asked again puts them in the music at
        once, not after the late one: in a flood, up to two 5 s waits in silence)."""
        deadline = time.monotonic() + self._timeout
        repeat = next((a for a in about if a.startswith("add:")), None)
        while self.behind:
            same = self._late_about[repeat] if repeat else 0
            waiting = next((a for a in about if a != repeat and self._late_about[a] > same),
                           None)
            if waiting is None:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise SocketClosed(f"an earlier request about {waiting} has had no answer "
                                   f"on the events socket for {self._timeout:g} s; not sent")
            if self._progress is None:
                self._progress = asyncio.Event()
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except TimeoutError:
                pass

    def _answered_late(self, request_id: int) -> None:
        about = self._late.pop(request_id)
        self._late_about.subtract(about)
        for a in about:
            if self._late_about[a] <= 0:
                del self._late_about[a]

    def _woken(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    def _caught_up(self, how: str) -> None:
        log.info("ari_socket_caught_up", how=how, unanswered=len(self._late),
                 behind_s=round(time.monotonic() - self._behind_since, 1))
        self._late.clear()
        self._late_about.clear()
        self._woken()

    def _answered_up_to(self, request_id: str) -> None:
        """Asterisk answers one socket's requests in the order asked: an answer to request n
        answers every late request before it."""
        if not (request_id.isascii() and request_id.isdigit() and len(request_id) <= 18):
            return  # not one of ours (ours count up from 1; "²" is a digit to isdigit)
        n = int(request_id)
        while self._late:
            first = next(iter(self._late))
            if first > n:
                self._woken()
                return
            self._answered_late(first)
        self._caught_up("answered")

    def answered(self, data: dict[str, Any]) -> None:
        """A RESTResponse from the socket. One for no request of ours (it came after its
        timeout) or with fields out of shape is logged and dropped."""
        request_id = str(data.get("request_id"))
        if self._late:
            self._answered_up_to(request_id)
        asked = self._pending.pop(request_id, None)
        if asked is None or asked[0].done():
            log.debug("ari_socket_response_unclaimed", request_id=request_id[:64])
            return
        fut = asked[0]
        status, body = data.get("status_code"), data.get("message_body", "")
        if (not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599
                or not isinstance(body, str)):
            log.error("ari_socket_response_malformed", status=repr(status)[:40],
                      body=repr(body)[:200])
            fut.set_exception(SocketClosed("a malformed RESTResponse"))
            return
        fut.set_result((status, body))


def _ends_stasis(method: str, path: str) -> bool:
    """The hand-back to the dialplan and the hang-up: nothing of the call comes after them."""
    return (method == "DELETE" and path.count("/") == 2 and path.startswith("/channels/")) or (
        method == "POST" and path.endswith("/continue"))


def _made_first(method: str, path: str) -> tuple[str, ...]:
    """What the hang-up of a channel waits for: that channel's own creation."""
    return (f"made:{path.split('/')[2]}",) if method == "DELETE" else ()


def touches(method: str, path: str, params: dict[str, Any]) -> tuple[str, ...]:
    """The channels and playbacks a request is about: "channel:ID", "playback:ID"; and
    "made:ID" for a request that makes channel ID (an originate with its id), "add:..." for a
    bridge add (which bridge, which channels: the same add asked again)."""
    parts = path.strip("/").split("/")
    pairs = list(itertools.pairwise(parts))
    about = [f"channel:{ident}" for kind, ident in pairs if kind in ("channels", "snoop")]
    about += [f"playback:{ident}" for kind, ident in pairs if kind == "playbacks"]
    channels = str(params.get("channel", "")) + "," + str(params.get("channelId", ""))
    about += [f"channel:{c}" for c in channels.split(",") if c]
    if params.get("playbackId"):
        about.append(f"playback:{params['playbackId']}")
    if method == "POST" and parts[-1] == "addChannel":  # the same add, should it be asked again
        about.append(f"add:{path}?{params.get('channel', '')}")
    if method == "POST" and parts[0] == "channels" and len(parts) <= 2:
        made = parts[1] if len(parts) == 2 and parts[1] != "create" else str(
            params.get("channelId", ""))
        if made:
            about.append(f"made:{made}")
    return tuple(about)
