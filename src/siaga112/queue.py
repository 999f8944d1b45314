"""The queue: first come, first served, with a priority lane (silent emergencies, blocked
callers who asked through), matched to the free operator who has been idle longest.

Matching is synchronous and in memory, so no two callers are offered the same operator. The
caller's session does the ringing (session.py) and tells the queue how it went.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from siaga112.model import LineType, QueueEntry, QueueSnapshot, utcnow
from siaga112.operators import OperatorDesk

log = structlog.get_logger(__name__)
_order = itertools.count()


@dataclass
class Waiter:
    call_id: str
    caller: str | None
    line_type: LineType
    offer: Callable[[str], None]  # ring this operator for me
    since: datetime = field(default_factory=utcnow)
    priority: bool = False
    flags: list[str] = field(default_factory=list)
    order: int = field(default_factory=lambda: next(_order))

    def key(self) -> tuple[int, int]:
        return (0 if self.priority else 1, self.order)

    def entry(self) -> QueueEntry:
        return QueueEntry(
            call_id=self.call_id, caller=self.caller, line_type=self.line_type,
            since=self.since, priority=self.priority, flags=list(self.flags),
        )


class CallQueue:
    def __init__(
        self, desk: OperatorDesk, on_change: Callable[[], None]
    ) -> None:
        self._desk = desk
        self._waiting: dict[str, Waiter] = {}
        self._on_change = on_change
        self._matching = False
        self._held = False

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._waiting

    def snapshot(self, limit: int | None = None) -> QueueSnapshot:
        """The queue in order; with limit, only its first `limit` entries (length is all)."""
        waiting = self._waiting.values()
        ordered = (sorted(waiting, key=Waiter.key) if limit is None
                   else heapq.nsmallest(limit, waiting, key=Waiter.key))
        return QueueSnapshot(length=len(self._waiting), entries=[w.entry() for w in ordered])

    def position(self, call_id: str) -> int | None:
        ordered = sorted(self._waiting.values(), key=Waiter.key)
        for n, w in enumerate(ordered, 1):
            if w.call_id == call_id:
                return n
        return None

    def enqueue(self, waiter: Waiter, front: bool = False) -> int:
        """Queue a caller (again). `front`: first in its lane (a caller whose operator left)."""
        if front:
            waiter.order = -next(_order)
        self._waiting[waiter.call_id] = waiter
        pos = self.position(waiter.call_id) or 0
        self._changed()
        self.match()
        return pos

    def promote(self, call_id: str, flag: str) -> None:
        """Move a waiting caller into the priority lane, behind earlier priority callers."""
        w = self._waiting.get(call_id)
        if w is None:
            return
        w.priority = True
        w.order = next(_order)
        if flag not in w.flags:
            w.flags.append(flag)
        log.info("queue_promoted", call_id=call_id, flag=flag)
        self._changed()
        self.match()

    def flag(self, call_id: str, flag: str) -> None:
        """Mark a waiting caller (e.g. "silent") without changing their place."""
        w = self._waiting.get(call_id)
        if w is None:
            return
        if flag not in w.flags:
            w.flags.append(flag)
        self._changed()

    def waiters(self) -> list[Waiter]:
        return sorted(self._waiting.values(), key=Waiter.key)

    def hold(self) -> None:
        """No offers until release(): a resync is rebuilding who is busy."""
        self._held = True

    def release(self) -> None:
        self._held = False
        self.match()

    def remove(self, call_id: str) -> Waiter | None:
        w = self._waiting.pop(call_id, None)
        if w is not None:
            self._changed()
        return w

    def match(self) -> None:
        """Offer waiting callers to free operators. Re-entrant calls (an operator's state
        change while we match) are folded into the running loop."""
        if self._matching or self._held:
            return
        self._matching = True
        try:
            self._match()
        finally:
            self._matching = False

    def _match(self) -> None:
        while self._waiting:
            op = self._desk.pick_free()
            if op is None:
                return
            w = min(self._waiting.values(), key=Waiter.key)
            del self._waiting[w.call_id]
            self._desk.ringing(op.name, w.call_id)
            log.debug("queue_offer", call_id=w.call_id, operator=op.name)
            self._changed()
            w.offer(op.name)

    def _changed(self) -> None:
        self._on_change()  # the listener reads snapshot() when it publishes (coalesce.py)
