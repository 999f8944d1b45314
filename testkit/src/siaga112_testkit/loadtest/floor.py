"""The ARI floor: the daemon's conversation with Asterisk and nothing else, for `make bench`.

What a call costs the daemon is two things: the conversation Asterisk's ARI asks for (its
events, read from the socket; the requests that move the call; the loop's wake-ups for both)
and the product's own work around it (the call's session, screening, the queue and desk, the
journal and records, MQTT, the log lines, typed models). This app does only the first, exactly
as the daemon does it: the same application name (the dialplan's `Stasis()` reaches it), the
same event filter and desk-phone subscriptions, requests over the events socket, the same
holding bridges, and per call the same requests in the same order:

    caller's StasisStart    -> add it to its holding bridge -> originate the desk phone
    the phone's StasisStart -> create the call's mixing bridge -> add both
    either side's StasisEnd -> hang up the other, destroy the bridge

The first free desk phone of the first N of `queue.operators` (those the load's desk phones
play, as the daemon's logged-in operators) takes the longest waiting caller; a caller who
leaves while waiting is forgotten. Events are read with `json.loads`, nothing is validated,
recorded, published or logged. Its CPU per call beside the daemon's, in the same hour, tells
how much of the daemon's is the conversation (set by Asterisk) and how much its own work.

A bench tool, never the product: it has no fail-open, no hand-back, no records. Run as
`python -m siaga112_testkit.loadtest.floor --stats FILE` (the bench starts and stops it; at
SIGTERM it writes what it counted to FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from siaga112 import legs
from siaga112.settings import Settings
from siaga112.stasis import UNUSED_EVENTS
from siaga112_testkit import cpuprof
from siaga112_testkit.devstack import procs

REQUEST_TIMEOUT = 5.0
BRIDGED = "bridged"  # the count of callers put in a bridge with a desk phone
START_SECONDS = 30.0


class FloorError(Exception):
    """The floor could not run (a daemon holds the application, or it did not start)."""


@dataclass
class FloorHandle:
    pid: int
    logfile: Path
    counts: dict[str, int] = field(default_factory=dict)  # filled once it stopped
    folded: Path | None = None  # where its CPU-time sampler writes (started sampled)


@asynccontextmanager
async def floor_running(settings: Settings, operators: int, say: Callable[[str], None],
                        sampled: bool = False) -> AsyncIterator[FloorHandle]:
    """The floor app, ringing the first `operators` desk phones, in a process of its own (its
    CPU is measured by pid) for one run; its counts are in the handle once the block is left.
    Refused while a daemon answers on the settings' API address: the two would share one ARI
    application. sampled: under the CPU-time sampler, as daemon.daemon_running."""
    base = f"http://{settings.api.host}:{settings.api.port}"
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"{base}/health", timeout=aiohttp.ClientTimeout(total=2)):
                raise FloorError(f"a daemon answers at {base}: it holds the ARI application")
        except (aiohttp.ClientError, TimeoutError):
            pass
    state = settings.state_dir
    pidfile, logfile = state / "floor.pid", state / "floor.log"
    stats, ready = state / "floor-stats.json", state / "floor-ready"
    stats.unlink(missing_ok=True)
    ready.unlink(missing_ok=True)
    ari = settings.ari
    env = {**os.environ,  # the settings given, whatever the environment's config says
           "SIAGA112_ARI__URL": ari.url, "SIAGA112_ARI__USERNAME": ari.username,
           "SIAGA112_ARI__PASSWORD": ari.password.get_secret_value(),
           "SIAGA112_ARI__APP": ari.app, "SIAGA112_EVENT_LOOP": settings.event_loop,
           "SIAGA112_QUEUE__OPERATORS": json.dumps(list(settings.queue.operators))}
    args = ["--stats", str(stats), "--ready", str(ready), "--operators", str(operators)]
    argv = [sys.executable, "-m", "siaga112_testkit.loadtest.floor", *args]
    folded = state / "floor.folded" if sampled else None
    if folded is not None:
        argv = cpuprof.wrapped(folded, "siaga112_testkit.loadtest.floor", *args)
    pid = procs.spawn(argv, pidfile, logfile, env=env)
    say(f"started the ARI floor (pid {pid}, log {logfile})")
    handle = FloorHandle(pid, logfile, folded=folded)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not ready.exists():
            if time.monotonic() > deadline or procs.read_pid(pidfile) is None:
                raise FloorError(f"the ARI floor did not start (log {logfile})")
            await asyncio.sleep(0.1)
        yield handle
    finally:
        await asyncio.to_thread(procs.stop_pid, pidfile, timeout=10)
        try:
            handle.counts = json.loads(stats.read_text())
        except (OSError, ValueError):
            handle.counts = {}
        say(f"stopped the ARI floor (pid {pid})")


class Floor:
    def __init__(self, settings: Settings, operators: int) -> None:
        self._settings = settings
        self._app = settings.ari.app
        self._free = collections.deque(list(settings.queue.operators)[:operators])
        self._waiting: collections.deque[str] = collections.deque()
        self._calls: dict[str, dict[str, Any]] = {}  # caller's channel -> its legs
        self._caller_of: dict[str, str] = {}  # desk phone's channel -> caller's channel
        self._pending: dict[str, asyncio.Future[int]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        # What it did, for the bench to check that the conversation was the daemon's:
        # "event <type>" and "<METHOD> <resource> <status>" counts, and "faults".
        self.counts: collections.Counter[str] = collections.Counter()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        ari = self._settings.ari
        auth = aiohttp.encode_basic_auth(ari.username, ari.password.get_secret_value())
        base = ari.url.rstrip("/")
        async with aiohttp.ClientSession(headers={"Authorization": auth}) as http:
            async with http.ws_connect(
                    base.replace("http", "ws", 1) + "/events",
                    params={"app": self._app, "subscribeAll": "false"}) as ws:
                await _ok(http.put(f"{base}/applications/{self._app}/eventFilter", json={
                    "disallowed": [{"type": t} for t in UNUSED_EVENTS]}))
                for op in self._settings.queue.operators:
                    await _ok(http.post(f"{base}/applications/{self._app}/subscription",
                                        params={"eventSource": f"deviceState:PJSIP/{op}"}))
                for bridge in legs.holding_bridges():  # 409: it is there (the daemon's)
                    await _ok(http.post(f"{base}/bridges/{bridge}", params={"type": "holding"}),
                              also=409)
                self._ws = ws
                if ready is not None:
                    ready.set()
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    self._on_message(json.loads(msg.data))

    def _on_message(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "RESTResponse":
            fut = self._pending.pop(str(ev.get("request_id")), None)
            if fut is not None and not fut.done():
                fut.set_result(int(ev.get("status_code") or 0))
            return
        self.counts[f"event {kind}"] += 1
        channel = str((ev.get("channel") or {}).get("id"))
        args = ev.get("args") or []
        if kind == "StasisStart" and args[:1] == ["citizen"]:
            self._spawn(self._arrived(channel))
        elif kind == "StasisStart" and args[:1] == ["operator"] and len(args) > 1:
            self._spawn(self._answered(channel, args[1]))
        elif kind == "StasisEnd":
            self._spawn(self._ended(channel))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counts["faults"] += 1

    async def _request(self, method: str, uri: str, params: dict[str, Any]) -> int:
        assert self._ws is not None
        request_id = str(next(self._ids))
        message: dict[str, Any] = {"type": "RESTRequest", "request_id": request_id,
                                   "method": method, "uri": uri}
        if params:
            message["query_strings"] = [{"name": k, "value": str(v)} for k, v in params.items()]
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            await self._ws.send_str(json.dumps(message))
            status = await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        finally:
            self._pending.pop(request_id, None)
        self.counts[f"{method} {uri.split('/')[0]} {status}"] += 1
        return status

    async def _arrived(self, caller: str) -> None:
        self._calls[caller] = {"operator": None, "phone": None, "bridged": False}
        await self._request("POST", f"bridges/{legs.holding_bridge(caller)}/addChannel",
                            {"channel": caller, "role": "participant"})
        self._waiting.append(caller)
        await self._offer()

    async def _offer(self) -> None:
        while self._free and self._waiting:
            caller = self._waiting.popleft()
            call = self._calls.get(caller)
            if call is None:
                continue  # left while waiting
            operator = self._free.popleft()
            phone = legs.operator_leg(caller, operator, 1)
            call["operator"], call["phone"] = operator, phone
            self._caller_of[phone] = caller
            await self._request("POST", "channels", {
                "endpoint": f"PJSIP/{operator}", "app": self._app, "channelId": phone,
                "appArgs": f"operator,{caller}", "callerId": '"112" <112>', "timeout": 30})

    async def _answered(self, phone: str, caller: str) -> None:
        call = self._calls.get(caller)
        if call is None:  # the caller left while the phone rang
            await self._request("DELETE", f"channels/{phone}", {})
            return
        bridge = legs.call_bridge(caller)
        call["bridged"] = True
        await self._request("POST", f"bridges/{bridge}", {"type": "mixing", "name": "floor"})
        if await self._request("POST", f"bridges/{bridge}/addChannel",
                               {"channel": f"{caller},{phone}"}) < 300:
            self.counts[BRIDGED] += 1

    async def _ended(self, channel: str) -> None:
        caller = channel if channel in self._calls else self._caller_of.get(channel)
        call = self._calls.pop(caller, None) if caller is not None else None
        if caller is None or call is None:
            return  # the other side of a call already ended, or a phone whose caller left
        phone = call["phone"]
        if phone is not None:
            self._caller_of.pop(phone, None)
        other = phone if channel == caller else caller
        asks = []
        if other is not None:
            asks.append(self._request("DELETE", f"channels/{other}", {}))
        if call["bridged"]:
            asks.append(self._request("DELETE", f"bridges/{legs.call_bridge(caller)}", {}))
        await asyncio.gather(*asks)
        if call["operator"] is not None:
            self._free.append(call["operator"])
        await self._offer()


async def _ok(request: Any, also: int = 0) -> None:
    async with request as response:
        if response.status >= 300 and response.status != also:
            raise RuntimeError(f"ARI {response.method} {response.url.path}: {response.status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siaga112_testkit.loadtest.floor", description=__doc__)
    parser.add_argument("--stats", type=Path, required=True,
                        help="where to write the counts at SIGTERM (JSON)")
    parser.add_argument("--ready", type=Path, help="a file created once it takes calls")
    parser.add_argument("--operators", type=int, default=8,
                        help="ring the first N desk phones of queue.operators")
    args = parser.parse_args(argv)
    settings = Settings()
    floor = Floor(settings, args.operators)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        task = asyncio.ensure_future(floor.run(ready))
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if ready.is_set() and args.ready is not None:
            args.ready.write_text("ready\n")
        try:
            await task
        except asyncio.CancelledError:
            pass

    # The daemon's own loop (settings.event_loop), so that the two are measured alike.
    if settings.event_loop == "uvloop":
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()
    with runner:
        runner.run(run())
    args.stats.write_text(json.dumps(dict(floor.counts), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
