"""The queue: first come, first served, with a priority lane (silent emergencies, blocked
callers who asked through), matched to the free operator who has been idle longest.

Matching is synchronous and in memory, so no two callers are offered the same operator. The
caller's session does the ringing (session.py) and tells the queue how it went.
"""

from __future__ import annotations

import bisect
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
        # The queue's order, kept sorted: (lane, order, call id) of every waiter, and each
        # waiter's place in it. Through a burst a thousand callers wait, and each arrival's
        # position, each offer's head and each snapshot's head sorted or scanned them all
        # (a tenth of the daemon's CPU in a 1000-caller burst); bisecting costs microseconds.
        self._line: list[tuple[int, int, str]] = []
        self._places: dict[str, tuple[int, int, str]] = {}
        self._on_change = on_change
        self._matching = False
        self._held = False

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._waiting

    def snapshot(self, limit: int | None = None) -> QueueSnapshot:
        """The queue in order; with limit, only its first `limit` entries (length is all)."""
        line = self._line if limit is None else self._line[:limit]
        return QueueSnapshot(length=len(self._waiting),
                             entries=[self._waiting[cid].entry() for *_, cid in line])

    def position(self, call_id: str) -> int | None:
        place = self._places.get(call_id)
        return None if place is None else bisect.bisect_left(self._line, place) + 1

    def _add(self, waiter: Waiter) -> None:
        self._drop(waiter.call_id)
        place = (*waiter.key(), waiter.call_id)
        bisect.insort(self._line, place)
        self._places[waiter.call_id] = place
        self._waiting[waiter.call_id] = waiter

    def _drop(self, call_id: str) -> Waiter | None:
        place = self._places.pop(call_id, None)
        if place is not None:
            del self._line[bisect.bisect_left(self._line, place)]
        return self._waiting.pop(call_id, None)

    def enqueue(self, waiter: Waiter, front: bool = False) -> int:
        """Queue a caller (again). `front`: first in its lane (a caller whose operator left)."""
        if front:
            waiter.order = -next(_order)
        self._add(waiter)
        pos = self.position(waiter.call_id) or 0
        self._changed()
        self.match()
        return pos

    def promote(self, call_id: str, flag: str) -> None:
        """Move a waiting caller into the priority lane, behind earlier priority callers."""
        w = self._drop(call_id)
        if w is None:
            return
        w.priority = True
        w.order = next(_order)
        self._add(w)
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
        return [self._waiting[cid] for *_, cid in self._line]

    def hold(self) -> None:
        """No offers until release(): a resync is rebuilding who is busy."""
        self._held = True

    def release(self) -> None:
        self._held = False
        self.match()

    def remove(self, call_id: str) -> Waiter | None:
        w = self._drop(call_id)
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
        while self._line:
            op = self._desk.pick_free()
            if op is None:
                return
            head = self._line[0][2]
            w = self._drop(head)
            if w is None:  # _add and _drop keep the two together; never spin on a bad head
                log.error("queue_line_inconsistent", call_id=head)
                return
            self._desk.ringing(op.name, w.call_id)
            log.debug("queue_offer", call_id=w.call_id, operator=op.name)
            self._changed()
            w.offer(op.name)

    def _changed(self) -> None:
        self._on_change()  # the listener reads snapshot() when it publishes (coalesce.py)
