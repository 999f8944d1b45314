"""Where a call's steps go: the records writer and the MQTT notifier both implement EventSink.

emit methods never block and never raise into the call path: a sink that cannot keep up
buffers, journals or counts what it drops, by its own bounded rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from siaga112.model import CallEvent, OperatorEvent

log = structlog.get_logger(__name__)


class EventSink(Protocol):
    def call_event(self, event: CallEvent) -> None: ...

    def operator_event(self, event: OperatorEvent) -> None: ...


class FanOut:
    """Hands each event to every sink; a sink that raises is logged, the others still get it."""

    def __init__(self, sinks: Sequence[EventSink]) -> None:
        self._sinks = list(sinks)

    def call_event(self, event: CallEvent) -> None:
        for sink in self._sinks:
            try:
                sink.call_event(event)
            except Exception:
                log.exception("sink_failed", sink=type(sink).__name__, event_type=event.type)

    def operator_event(self, event: OperatorEvent) -> None:
        for sink in self._sinks:
            try:
                sink.operator_event(event)
            except Exception:
                log.exception("sink_failed", sink=type(sink).__name__, state=event.state)
