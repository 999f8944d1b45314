"""Operators' chosen states in PostgreSQL (operator_store.py), through the desk: written through,
read back by another desk (another daemon, or this one after a PBX restart), kept in memory
and written when PostgreSQL is back after an outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import OperatorState
from siaga112.operator_store import ChoiceStore
from siaga112.operators import OperatorDesk
from siaga112_testkit.devstack.postgres import start_postgres, stop_postgres
from tests.conftest import wait_for
from tests.fakes import FakeAri, ListSink

from .conftest import PORT

NAMES = ["op1", "op2", "op3"]


def desk_on(store: ChoiceStore) -> OperatorDesk:
    return OperatorDesk(NAMES, FakeAri(), ListSink(), wrapup=0, start_logged_in=True,
                        on_change=lambda: None, store=store)


async def reread(engine: AsyncEngine) -> OperatorDesk:
    """Another desk (another daemon, or this one after a restart) loading what was written."""
    other = desk_on(ChoiceStore(engine, retry_interval=0.1))
    await other.load()
    return other


def a_call_ends(desk: OperatorDesk, name: str) -> None:
    """name takes a call and it ends (wrapup 0): idle from now on."""
    desk.ringing(name, f"call-{name}")
    desk.connected(name, f"call-{name}")
    desk.released(name, f"call-{name}")


async def test_a_second_desk_reads_what_the_first_chose(clean: AsyncEngine) -> None:
    store = ChoiceStore(clean, retry_interval=0.1)
    writer = asyncio.create_task(store.run())
    try:
        desk = desk_on(store)
        desk.choose("op1", OperatorState.PAUSED, "break", persist=True)
        desk.choose("op2", OperatorState.LOGGED_OUT, "desk phone", persist=True)
        await asyncio.sleep(0.5)
        desk.choose("op3", OperatorState.AVAILABLE, None, persist=True)  # idle from now on
        await wait_for(lambda: store.pending == 0, 5, "written")
    finally:
        writer.cancel()
    other = await reread(clean)
    assert [(o.operator, o.state, o.reason) for o in other.snapshot()] == [
        ("op1", OperatorState.PAUSED, "break"),
        ("op2", OperatorState.LOGGED_OUT, "desk phone"),
        ("op3", OperatorState.AVAILABLE, None),
    ]
    # Idle since carries over: op3 has been idle for less time than it says the others were.
    op3 = other.get("op3")
    assert op3 is not None and op3.idle_since_wall == desk.get("op3").idle_since_wall  # type: ignore[union-attr]


async def test_choices_wait_in_memory_while_postgres_is_down(
    clean: AsyncEngine, pg_state_dir: Path
) -> None:
    store = ChoiceStore(clean, retry_interval=0.1)
    writer = asyncio.create_task(store.run())
    desk = desk_on(store)
    try:
        await asyncio.to_thread(stop_postgres, pg_state_dir)
        try:
            desk.choose("op1", OperatorState.PAUSED, "break", persist=True)
            await desk.load()  # a resync while PostgreSQL is away: the desk keeps its own
            assert desk.get("op1").state is OperatorState.PAUSED  # type: ignore[union-attr]
            await asyncio.sleep(0.5)
            assert store.pending >= 1
        finally:
            await asyncio.to_thread(start_postgres, pg_state_dir, PORT)
        await wait_for(lambda: store.pending == 0, 15, "written when PostgreSQL is back")
    finally:
        writer.cancel()
    other = await reread(clean)
    assert other.get("op1").state is OperatorState.PAUSED  # type: ignore[union-attr]


@contextlib.contextmanager
def transactions(engine: AsyncEngine) -> Iterator[list[object]]:
    """The transactions begun on engine inside the block."""
    writes: list[object] = []

    def began(conn: object) -> None:
        writes.append(conn)

    event.listen(engine.sync_engine, "begin", began)
    try:
        yield writes
    finally:
        event.remove(engine.sync_engine, "begin", began)


async def test_changes_close_together_are_written_in_one_transaction(clean: AsyncEngine) -> None:
    # Under load one write carries many changes.
    store = ChoiceStore(clean, retry_interval=0.1, gather=0.2)
    writer = asyncio.create_task(store.run())
    try:
        with transactions(clean) as writes:
            desk = desk_on(store)
            for name in NAMES:
                desk.choose(name, OperatorState.PAUSED, "break", persist=True)
            await wait_for(lambda: store.pending == 0, 5, "written")
    finally:
        writer.cancel()
    assert len(writes) == 1
    other = await reread(clean)
    assert [(o.operator, o.state) for o in other.snapshot()] == [
        (name, OperatorState.PAUSED) for name in NAMES]


async def test_an_idle_since_alone_waits_and_rides_with_the_next_choice(
    clean: AsyncEngine,
) -> None:
    """Every call's end gives its operator a new idle-since: it waits (idle_delay) instead of a
    transaction of its own; a choice (a pause) is written at once and takes it along."""
    store = ChoiceStore(clean, retry_interval=0.1, idle_delay=30)
    writer = asyncio.create_task(store.run())
    try:
        with transactions(clean) as writes:
            desk = desk_on(store)
            a_call_ends(desk, "op1")
            idle_since = desk.get("op1").idle_since_wall  # type: ignore[union-attr]
            await asyncio.sleep(0.5)
            assert store.pending == 1 and writes == []  # waiting, not written
            desk.choose("op2", OperatorState.PAUSED, "break", persist=True)
            await wait_for(lambda: store.pending == 0, 5, "written with the pause")
    finally:
        writer.cancel()
    assert len(writes) == 1
    other = await reread(clean)
    assert other.get("op1").idle_since_wall == idle_since  # type: ignore[union-attr]
    assert other.get("op2").state is OperatorState.PAUSED  # type: ignore[union-attr]


async def test_an_idle_since_alone_is_written_after_idle_delay(clean: AsyncEngine) -> None:
    store = ChoiceStore(clean, retry_interval=0.1, idle_delay=0.5)
    writer = asyncio.create_task(store.run())
    try:
        desk = desk_on(store)
        a_call_ends(desk, "op3")
        await wait_for(lambda: store.pending == 0, 5, "written after idle_delay")
    finally:
        writer.cancel()
    other = await reread(clean)
    assert other.get("op3").idle_since_wall == desk.get("op3").idle_since_wall  # type: ignore[union-attr]
