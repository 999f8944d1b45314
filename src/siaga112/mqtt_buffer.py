"""The notifier's topic tree and its bounded, ordered out-buffer (docs/mqtt.md, the buffer
rule): events up to a maximum with the oldest dropped, retained state coalesced per topic."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from siaga112 import ids


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True)
class _Entry:
    """One buffered event: the messages it becomes, published together, in order."""

    seq: int
    messages: tuple[Message, ...]


class Topics:
    """The topic tree under one prefix (docs/mqtt.md)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.status = f"{self.prefix}/status"
        self.queue = f"{self.prefix}/queue"
        # Every call's events: a subscription filter (each event is published once, on its
        # call's topic).
        self.all_calls = f"{self.prefix}/calls/+/events"
        self.operator_events = f"{self.prefix}/events/operators"
        self.team_moving = f"{self.prefix}/agencies/+/moving"
        self.leadership = f"{self.prefix}/events/leadership"  # HA: a daemon became active, ...
        self.leader = f"{self.prefix}/leader"  # HA: retained, the active daemon

    def call(self, call_id: str) -> str:
        return f"{self.prefix}/calls/{call_id}/events"

    def operator(self, operator: str) -> str:
        return f"{self.prefix}/operators/{operator}"

    def agency_dispatches(self, code: str) -> str:
        return f"{self.prefix}/agencies/{code}/dispatches"

    def agency_of_moving(self, topic: str) -> str | None:
        """The agency code in {prefix}/agencies/{code}/moving, or None for another topic."""
        head = f"{self.prefix}/agencies/"
        if not (topic.startswith(head) and topic.endswith("/moving")):
            return None
        code = topic[len(head) : -len("/moving")]
        return code if code and "/" not in code else None


def _segment_ok(value: str) -> bool:
    """A value usable as one topic level: an id (ids.py: bounded, no level separator, no
    wildcard, no control character)."""
    return ids.is_id(value)


class OutBuffer:
    """Bounded, ordered: events up to max_events (oldest dropped), state coalesced per topic."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._events: deque[_Entry] = deque()
        self._state: dict[str, _Entry] = {}  # topic -> latest; insertion order is seq order
        self._seq = 0

    def __len__(self) -> int:
        return len(self._events) + len(self._state)

    def add_event(self, messages: tuple[Message, ...]) -> int:
        """Buffer an event; return how many old events were dropped to make room."""
        self._seq += 1
        self._events.append(_Entry(self._seq, messages))
        dropped = 0
        while len(self._events) > self.max_events:
            self._events.popleft()
            dropped += 1
        return dropped

    def set_state(self, message: Message) -> None:
        self._seq += 1
        self._state.pop(message.topic, None)  # re-insert: keeps dict order = seq order
        self._state[message.topic] = _Entry(self._seq, (message,))

    def head(self, limit: int) -> list[_Entry]:
        """Up to limit entries in seq order, without removing them."""
        out: list[_Entry] = []
        events = iter(self._events)
        states = iter(self._state.values())
        ev, st = next(events, None), next(states, None)
        while len(out) < limit and (ev is not None or st is not None):
            if st is None or (ev is not None and ev.seq < st.seq):
                out.append(ev)  # type: ignore[arg-type]
                ev = next(events, None)
            else:
                out.append(st)
                st = next(states, None)
        return out

    def remove(self, sent: Iterable[_Entry]) -> None:
        """Forget entries that were published, unless dropped or superseded meanwhile."""
        done = {e.seq for e in sent}
        while self._events and self._events[0].seq in done:
            self._events.popleft()
        for topic in [t for t, e in self._state.items() if e.seq in done]:
            del self._state[topic]
