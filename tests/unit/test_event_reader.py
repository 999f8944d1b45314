"""The events socket's reader (ari/events.py) with messages that were already waiting: after the
daemon waited for a core, hundreds can be. The calls it hands events to must get their turn
before the whole backlog is read (a caller's take-in waited for all of it), and every event
still arrives, once and in order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp

from siaga112.ari import events as events_module
from siaga112.ari.events import EventStream
from siaga112.ari.models import AriEvent, StasisEnd
from siaga112.settings import AriSettings

BACKLOG = 40
HANDLING = 0.0005  # s of CPU each event costs its handler here (a busy wait: no await)


class WaitingMessages:
    """A socket whose messages are all there already: each read returns without waiting."""

    def __init__(self, texts: list[str]) -> None:
        self._messages = [aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, t, None) for t in texts]
        self._messages.append(aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, None, None))

    def __aiter__(self) -> WaitingMessages:
        return self

    async def __anext__(self) -> aiohttp.WSMessage:
        if not self._messages:
            raise StopAsyncIteration
        return self._messages.pop(0)


def _event(n: int) -> str:
    return json.dumps({"type": "StasisEnd", "application": "siaga112",
                       "channel": {"id": f"call-{n}"}})


def _channel(ev: AriEvent) -> str:
    assert isinstance(ev, StasisEnd)
    return ev.channel.id


async def _read(texts: list[str], on_event: Callable[[AriEvent], None]) -> None:
    async def on_connect() -> None:
        return None

    stream = EventStream(AriSettings(), on_event=on_event, on_connect=on_connect)
    await stream._read(WaitingMessages(texts))  # type: ignore[arg-type]


async def test_a_call_handed_an_event_runs_before_the_backlog_is_read() -> None:
    seen: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def session(channel: str) -> None:
        seen.append(f"session {channel}")

    def on_event(ev: AriEvent) -> None:
        channel = _channel(ev)
        seen.append(channel)
        if channel == "call-0":
            tasks.append(asyncio.create_task(session(channel)))
        end = time.perf_counter() + HANDLING
        while time.perf_counter() < end:
            pass

    assert BACKLOG * HANDLING > 4 * events_module.READ_SLICE
    await _read([_event(n) for n in range(BACKLOG)], on_event)
    await asyncio.gather(*tasks)
    events = [s for s in seen if not s.startswith("session")]
    assert events == [f"call-{n}" for n in range(BACKLOG)]  # all, once, in order
    turn = seen.index("session call-0")
    assert turn < BACKLOG / 2, f"the call ran only after {turn} of {BACKLOG} waiting events"


async def test_a_malformed_message_in_the_backlog_is_skipped_and_the_rest_is_read() -> None:
    seen: list[str] = []
    texts = [_event(0), "{not json", json.dumps({"type": 5}), _event(1)]
    await _read(texts, lambda ev: seen.append(_channel(ev)))
    assert seen == ["call-0", "call-1"]
