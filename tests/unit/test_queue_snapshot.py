"""The queue's snapshot: all of it for GET /queue, its head for the MQTT and live feeds (the
length always counts every caller)."""

from __future__ import annotations

from siaga112.model import LineType
from siaga112.queue import CallQueue, Waiter


def queue_of(n: int, priority: frozenset[int] = frozenset()) -> CallQueue:
    q = CallQueue(desk=None, on_change=lambda: None)  # type: ignore[arg-type]
    for i in range(n):
        w = Waiter(f"c{i}", f"+62811{i:07d}", LineType.MOBILE, offer=lambda _op: None,
                   priority=i in priority)
        q._waiting[w.call_id] = w
    return q


def test_the_head_is_the_queues_order_and_the_length_counts_everyone() -> None:
    q = queue_of(200, priority=frozenset({150, 7}))
    whole, head = q.snapshot(), q.snapshot(limit=50)
    assert whole.length == head.length == 200
    assert len(whole.entries) == 200 and len(head.entries) == 50
    assert head.entries == whole.entries[:50]
    assert [e.call_id for e in head.entries[:3]] == ["c7", "c150", "c0"]  # priority lane first


def test_a_short_queue_is_whole_under_a_limit() -> None:
    head = queue_of(3).snapshot(limit=50)
    assert head.length == 3 and [e.call_id for e in head.entries] == ["c0", "c1", "c2"]
