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
        q._add(w)
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


def test_the_kept_order_is_the_order_a_sort_gives_through_any_changes() -> None:
    """The queue keeps its order as it changes (queue.py's line); a sort of every waiter by
    lane and arrival, done again after each change, is the reference. Arrivals, callers
    put back at the front, promotions, callers queued again, hang-ups and offers, in a
    random mix."""
    import random

    from siaga112.queue import Waiter as W

    class Desk:
        free = 0

        def pick_free(self) -> object | None:
            if self.free <= 0:
                return None
            self.free -= 1
            return type("Op", (), {"name": "op1"})()

        def ringing(self, name: str, call_id: str) -> None:
            offered.append(call_id)

    rng = random.Random(112)
    offered: list[str] = []
    desk = Desk()
    q = CallQueue(desk=desk, on_change=lambda: None)  # type: ignore[arg-type]
    everyone: dict[str, W] = {}
    for step in range(3000):
        roll = rng.random()
        waiting = sorted(everyone.values(), key=W.key)
        if roll < 0.45 or not waiting:
            w = W(f"c{step}", None, LineType.MOBILE, offer=lambda _op: None,
                  priority=rng.random() < 0.1)
            everyone[w.call_id] = w
            position = q.enqueue(w, front=rng.random() < 0.05)
            assert position == sorted(everyone.values(), key=W.key).index(w) + 1
        elif roll < 0.5:
            q.promote(rng.choice(waiting).call_id, "blocked_bypass")
        elif roll < 0.55:  # queued again while still queued (a resync): once, in its lane
            again = rng.choice(waiting)
            position = q.enqueue(again, front=rng.random() < 0.5)
            assert position == sorted(everyone.values(), key=W.key).index(again) + 1
        elif roll < 0.8:
            gone = rng.choice(waiting)
            assert q.remove(gone.call_id) is gone
            del everyone[gone.call_id]
        else:
            desk.free = rng.randint(1, 3)
            expected = [w.call_id for w in waiting[:desk.free]]
            before = len(offered)
            q.match()
            desk.free = 0  # the operators left over are busy again before the next arrival
            assert offered[before:] == expected
            for cid in expected:
                del everyone[cid]
        reference = sorted(everyone.values(), key=W.key)
        assert q.waiters() == reference
        assert [e.call_id for e in q.snapshot(limit=5).entries] == [
            w.call_id for w in reference[:5]]
        if reference:
            pick = rng.choice(reference)
            assert q.position(pick.call_id) == reference.index(pick) + 1
    assert len(offered) > 100 and len(q) == len(everyone)
