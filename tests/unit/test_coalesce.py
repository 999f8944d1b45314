"""coalesce.Coalesced: many pokes, one publication of the latest state; a failing publisher
never reaches the poker."""

from __future__ import annotations

import asyncio

from siaga112.coalesce import Coalesced


async def test_many_pokes_publish_once_with_the_latest_state() -> None:
    state = {"n": 0}
    seen: list[int] = []
    poke = Coalesced(lambda: seen.append(state["n"]), delay=0.01)
    for n in range(1, 101):
        state["n"] = n
        poke()
    assert seen == []  # nothing yet: the publication waits for the moment to pass
    await asyncio.sleep(0.05)
    assert seen == [100]
    poke()
    await asyncio.sleep(0.05)
    assert seen == [100, 100]


async def test_flush_publishes_what_is_pending_now() -> None:
    seen: list[str] = []
    poke = Coalesced(lambda: seen.append("x"), delay=10)
    poke()
    poke.flush()
    assert seen == ["x"]
    poke.flush()  # nothing pending: nothing more
    assert seen == ["x"]


async def test_a_failing_publisher_is_logged_and_the_next_poke_works() -> None:
    calls = {"n": 0}

    def publish() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("broker gone")

    poke = Coalesced(publish, delay=0.001)
    poke()
    await asyncio.sleep(0.02)
    poke()
    await asyncio.sleep(0.02)
    assert calls["n"] == 2


def test_without_a_loop_it_publishes_at_once() -> None:
    seen: list[int] = []
    Coalesced(lambda: seen.append(1))()
    assert seen == [1]
