"""Leadership on PostgreSQL (siaga112/leadership.py) between two loops in one process, against
the dev PostgreSQL: one leader; a standby takes over when the leader's session dies and its
heartbeat stood still for a lease; never while the database is unreachable; a leader that
finds another holder in the row steps down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest

from siaga112.leadership import Leadership, LeaseWatch, Role
from siaga112.records.listen import asyncpg_dsn
from siaga112.settings import HaSettings
from tests.conftest import wait_for

BEAT, LEASE = 0.1, 0.5


@dataclass
class Node:
    """One daemon's leadership loop, with a database it can be cut off from."""

    leadership: Leadership
    activated: int = 0
    lost: int = 0
    cut_off: bool = False
    conns: list[asyncpg.Connection] = field(default_factory=list)


@pytest.fixture
async def nodes(db_url: str) -> AsyncIterator[Callable[[str], Node]]:
    made: list[Node] = []
    dsn = asyncpg_dsn(db_url)
    admin = await asyncpg.connect(dsn)
    await admin.execute("UPDATE ha_leader SET holder = NULL, epoch = 0, beat = 0")

    def make(name: str) -> Node:
        node: Node

        async def connect() -> asyncpg.Connection:
            if node.cut_off:
                raise OSError("connection refused (the test cut this node off)")
            conn = await asyncpg.connect(dsn, timeout=2, command_timeout=2)
            node.conns.append(conn)
            return conn

        async def on_active() -> None:
            node.activated += 1

        async def on_lost() -> None:
            node.lost += 1

        settings = HaSettings(enabled=True, node=name, heartbeat_interval=BEAT, lease=LEASE)
        node = Node(Leadership(db_url, settings, on_active, on_lost, connect=connect))
        made.append(node)
        node.leadership.start()
        return node

    yield make
    for node in made:
        await node.leadership.stop(release=False)
    await admin.close()


def kill_session(node: Node) -> None:
    """As kill -9 of the daemon does: its connection goes, the loop with it."""
    task = node.leadership._task
    assert task is not None
    task.cancel()
    for conn in node.conns:
        conn.terminate()


async def one_active(*all_nodes: Node) -> Node | None:
    active = [n for n in all_nodes if n.leadership.role is Role.ACTIVE]
    assert len(active) <= 1, [n.leadership.node for n in active]
    return active[0] if active else None


async def stays(seconds: float, check: Callable[[], Awaitable[None] | None]) -> None:
    """check() holds at every look for `seconds`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        result = check()
        if result is not None:
            await result
        await asyncio.sleep(0.02)


def test_lease_runs_only_while_watched() -> None:
    watch = LeaseWatch(lease=3.0)
    assert not watch.expired("a", 5, now=100.0)
    assert not watch.expired("a", 5, now=102.9)
    assert watch.expired("a", 5, now=103.0)
    assert not watch.expired("a", 6, now=103.1)  # it beat: the lease starts again
    watch.lost_sight()  # the database was away: what was seen before counts for nothing
    assert not watch.expired("a", 6, now=200.0)
    assert watch.expired("a", 6, now=203.0)
    assert watch.expired(None, 6, now=203.1)  # nobody leads: at once


async def test_one_leader_and_takeover_after_the_leader_dies(nodes) -> None:
    a = nodes("a")
    await wait_for(lambda: a.activated == 1, 5, "a leads")
    b = nodes("b")
    await stays(3 * LEASE, lambda: one_active(a, b))
    assert (a.leadership.role, b.leadership.role) == (Role.ACTIVE, Role.STANDBY)
    assert b.activated == 0
    kill_session(a)
    await wait_for(lambda: b.activated == 1, 5, "b takes over")
    assert b.leadership.epoch == (a.leadership.epoch or 0) + 1


async def test_graceful_stop_hands_the_lead_over(nodes) -> None:
    a = nodes("a")
    await wait_for(lambda: a.activated == 1, 5, "a leads")
    b = nodes("b")
    await stays(2 * LEASE, lambda: one_active(a, b))
    await a.leadership.stop(release=True)
    await wait_for(lambda: b.activated == 1, 5, "b takes over")


async def test_a_leader_that_finds_another_holder_steps_down(nodes, db_url: str) -> None:
    a = nodes("a")
    await wait_for(lambda: a.activated == 1, 5, "a leads")
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("UPDATE ha_leader SET holder = 'elsewhere', epoch = epoch + 1")
    finally:
        await conn.close()
    await wait_for(lambda: a.lost == 1, 5, "a steps down")
    assert a.leadership.role is Role.STANDBY


async def test_no_takeover_and_no_split_brain_without_the_database(nodes) -> None:
    a = nodes("a")
    await wait_for(lambda: a.activated == 1, 5, "a leads")
    b = nodes("b")
    await stays(2 * LEASE, lambda: one_active(a, b))
    for node in (a, b):  # PostgreSQL unreachable for both, for many leases
        node.cut_off = True
        for conn in node.conns:
            conn.terminate()
    await wait_for(lambda: not a.leadership.database and not b.leadership.database, 5,
                   "both lost the database")
    await stays(4 * LEASE, lambda: one_active(a, b))
    assert (a.leadership.role, b.leadership.role) == (Role.ACTIVE, Role.STANDBY)
    # Back: the standby may not count the outage towards the lease; the leader beats again.
    b.cut_off = False
    await asyncio.sleep(0.3 * LEASE)  # the standby is back first: the worst case
    a.cut_off = False
    await wait_for(lambda: a.leadership.database, 5, "a back")
    await stays(4 * LEASE, lambda: one_active(a, b))
    assert (a.activated, a.lost, b.activated) == (1, 0, 0)
    assert a.leadership.role is Role.ACTIVE
