"""The daemon's own events, live, for the web console: `LiveFeed` is one more EventSink beside
the records writer and the MQTT notifier (sinks.FanOut), and is told every queue and desk
snapshot. It keeps the latest snapshots and the events of live calls (and of calls that just
ended, for the operator's wrap-up), and hands every change to each open stream (GET
/console/events) through that stream's bounded queue.

Never blocks and never raises into the call path: a stream that falls `STREAM_BUFFER` messages
behind is ended (its console reconnects and starts again from the snapshots); messages are
serialised once, only while someone listens.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import BaseModel

from siaga112.model import (
    CallEvent,
    CallEventType,
    OperatorEvent,
    OperatorSnapshot,
    QueueSnapshot,
)

STREAM_BUFFER = 1000  # messages a stream may be behind before it is ended
MAX_STREAMS = 64
MAX_LIVE_CALLS = 2000  # calls whose events are kept (the oldest is forgotten past this)
KEEP_ENDED = 200  # ended calls whose events are kept for wrap-up
MAX_EVENTS_PER_CALL = 500


class _Operators(BaseModel):
    operators: list[OperatorSnapshot]


@dataclass(eq=False)  # each stream is itself (kept in a set)
class Stream:
    """One open console's queue of (kind, JSON) messages; None ends it."""

    queue: asyncio.Queue[tuple[str, str] | None] = field(
        default_factory=lambda: asyncio.Queue(STREAM_BUFFER))
    ended: bool = False


class TooManyStreams(Exception):
    """MAX_STREAMS consoles are open already."""


class LiveFeed:
    def __init__(self) -> None:
        self.queue: QueueSnapshot | None = None
        self.operators: list[OperatorSnapshot] = []
        self._calls: OrderedDict[str, list[CallEvent]] = OrderedDict()
        self._ended: OrderedDict[str, list[CallEvent]] = OrderedDict()
        self._streams: set[Stream] = set()
        self.dropped_streams = 0  # streams ended because they fell behind

    # -- in: the sink and the snapshots -----------------------------------------------------

    def call_event(self, event: CallEvent) -> None:
        events = self._calls.get(event.call_id)
        if events is None:
            events = self._ended.get(event.call_id)
        if events is None:
            events = self._calls[event.call_id] = []
            while len(self._calls) > MAX_LIVE_CALLS:
                self._calls.popitem(last=False)
        if len(events) < MAX_EVENTS_PER_CALL:
            events.append(event)
        if event.type is CallEventType.ENDED and event.call_id in self._calls:
            self._ended[event.call_id] = self._calls.pop(event.call_id)
            while len(self._ended) > KEEP_ENDED:
                self._ended.popitem(last=False)
        if self._streams:
            self._send("call", event.model_dump_json())

    def operator_event(self, event: OperatorEvent) -> None:
        """Operators' changes reach the console as whole snapshots (operators_changed)."""

    def queue_changed(self, snapshot: QueueSnapshot) -> None:
        self.queue = snapshot
        if self._streams:
            self._send("queue", snapshot.model_dump_json())

    def operators_changed(self, operators: list[OperatorSnapshot]) -> None:
        self.operators = list(operators)
        if self._streams:
            self._send("operators", _Operators(operators=self.operators).model_dump_json())

    # -- out --------------------------------------------------------------------------------

    def events_of(self, call_id: str) -> list[CallEvent]:
        """The events of a live or just-ended call seen by this daemon, in arrival order."""
        return list(self._calls.get(call_id) or self._ended.get(call_id) or [])

    def open(self) -> Stream:
        """A new stream, starting with the current snapshots; TooManyStreams past MAX_STREAMS."""
        if len(self._streams) >= MAX_STREAMS:
            raise TooManyStreams(f"{MAX_STREAMS} console streams are open")
        stream = Stream()
        if self.queue is not None:
            stream.queue.put_nowait(("queue", self.queue.model_dump_json()))
        stream.queue.put_nowait(
            ("operators", _Operators(operators=self.operators).model_dump_json()))
        self._streams.add(stream)
        return stream

    def close_stream(self, stream: Stream) -> None:
        self._streams.discard(stream)

    def close(self) -> None:
        """End every stream (the daemon stops)."""
        for stream in list(self._streams):
            self._end(stream)

    @property
    def streams(self) -> int:
        return len(self._streams)

    def _send(self, kind: str, payload: str) -> None:
        for stream in list(self._streams):
            try:
                stream.queue.put_nowait((kind, payload))
            except asyncio.QueueFull:
                self.dropped_streams += 1
                self._end(stream)

    def _end(self, stream: Stream) -> None:
        self._streams.discard(stream)
        stream.ended = True
        while True:  # make room for the end mark
            try:
                stream.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                stream.queue.get_nowait()
