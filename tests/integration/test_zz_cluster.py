"""The cluster topology (docs/cluster.md): Kamailio at 127.0.0.1:5060 in front of two Asterisk
nodes, real processes on loopback, real SIPp phones.

The single stack's PBX binds 127.0.0.1:5060 as the proxy does, so this module stops it, runs the
cluster, and starts the single PBX again at the end, whatever happened (its fixture).

Without a daemon (every call on a node goes the dialplan's fail-open way, Queue() to the desk
phones, which shows the proxy and the nodes working):
- calls from the trunks are spread over both nodes, desk-phone codes reach a node (identified
  by the proxy's X-Siaga112-Source header, not by their source address);
- kill -9 of node 1's Asterisk: the proxy retries calls on node 2 and stops sending there; every
  call placed 5 s after the kill or later is served on node 2.

With one daemon over both nodes (ari.nodes):
- one queue and one desk: longest idle across the nodes, 40 callers from both trunks served;
- kill -9 of node 1 with calls connected on both nodes: node 1's end `dropped` and are on the
  callback list, node 2's go on, calls placed 5 s after the kill or later are served on node 2;
- daemons a and b (processes) over both nodes: kill -9 of a with a call connected and one
  waiting on each node, b takes back all four;
- operators' states survive a restart of both nodes.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest

from siaga112 import procs
from siaga112.model import CallState, OperatorState, utcnow
from siaga112.records.callbacks import list_callbacks
from siaga112_testkit.cluster.stack import Cluster
from siaga112_testkit.devstack.pbx import Pbx
from tests.conftest import (
    OPERATORS,
    REPO,
    STATE,
    ari_settings,
    daemon_settings,
    set_choices,
    stored_choice,
    wait_for,
)
from tests.integration.pbx_view import bridged_calls, holding_count
from tests.integration.phones import LANDLINE, MOBILE, Phones, e164, invites, mobile_number
from tests.integration.test_ha_standby import pair
from tests.integration.test_restart import log_events

pytestmark = pytest.mark.integration

NODE_OF = {"sip:127.0.0.11:5060": "node1", "sip:127.0.0.12:5060": "node2"}
_DISPATCH = re.compile(r"siaga112-dispatch(?:-retry)? method=INVITE from=\S+ user=(\S+) "
                       r"node=(\S+)")


@pytest.fixture(scope="module")
def cluster(stack) -> Iterator[Cluster]:
    single = Pbx(repo=REPO, state_dir=STATE)
    c = Cluster(repo=REPO, state_dir=STATE)
    single.down()
    try:
        c.up(daemons=False)
        yield c
    finally:
        c.down()
        single.up()  # the tests after this module run on the single stack again


@pytest.fixture
def phones(phones: Phones, cluster: Cluster) -> Phones:
    """The phones call through the cluster's nodes: their calls are ended there (the single
    PBX is down) before the phones stop."""
    phones.pbx_urls = [node.ari_url for node in cluster.nodes]
    return phones


def _kill9(node: Any) -> float:
    """kill -9 of a node's Asterisk; when (time.monotonic())."""
    pid = procs.read_pid(node.pidfile)
    assert pid is not None, f"{node.name} is not running"
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def node_of_calls(c: Cluster) -> dict[str, str]:
    """Caller number -> the node the proxy last sent that caller's INVITE to."""
    found: dict[str, str] = {}
    if c.proxy_log.exists():
        for user, node in _DISPATCH.findall(c.proxy_log.read_text(errors="replace")):
            found[user] = NODE_OF.get(node, node)
    return found


async def test_calls_spread_over_both_nodes_and_codes_reach_them(cluster, phones) -> None:
    op1 = await phones.operator(1, ring=0.2, talk=0.5, calls=None)
    numbers = [mobile_number() for _ in range(4)]
    for i, number in enumerate(numbers):
        call = await phones.citizen(number, MOBILE if i % 2 else LANDLINE, hold=1.0)
        result = await call.wait(20)
        assert result.ok, result.explain()
    nodes = node_of_calls(cluster)
    assert {nodes[n] for n in numbers} == {"node1", "node2"}, nodes
    await wait_for(lambda: len(invites(op1)) == len(numbers), 10, "op1 rang for every call")
    # A desk phone's code through the proxy: the node knows op2 by the proxy's header.
    code = await phones.code(2, "*13")
    assert code.ok, code.explain()


async def test_node_killed_calls_go_to_the_other(cluster, phones) -> None:
    await phones.operator(1, ring=0.2, talk=0.5, calls=None)
    node1 = cluster.node("node1")
    killed = _kill9(node1)
    placed: list[tuple[float, str, object]] = []
    while time.monotonic() - killed < 8:
        number = mobile_number()
        call = await phones.citizen(number, MOBILE, hold=1.0)
        placed.append((time.monotonic() - killed, number, call))
        await asyncio.sleep(1.0)
    nodes: dict[str, str] = {}
    served_at: list[float] = []
    for at, number, call in placed:
        result = await call.wait(30)  # type: ignore[attr-defined]
        nodes = node_of_calls(cluster)
        if at >= 5.0:
            assert result.ok, result.explain()
            assert nodes.get(number) == "node2", (number, nodes)
        if result.ok:
            served_at.append(at)
    retried = "siaga112-dispatch-retry" in cluster.proxy_log.read_text(errors="replace")
    print(f"\n[cluster] node1 killed: {len(served_at)}/{len(placed)} calls served, the first "
          f"placed {served_at[0]:.1f} s after the kill; a call retried on node2: {retried}")
    procs.stop_pid(node1.pidfile, timeout=5)  # the pid file of the killed node
    await asyncio.to_thread(node1.up)  # the tests after this one have both nodes again


# -- one daemon over both nodes (ari.nodes): one queue, one desk ---------------------------------


async def _hang_up_everything(c: Cluster) -> None:
    from siaga112.ari.client import AriClient, AriError

    for node in c.nodes:
        async with AriClient(ari_settings().model_copy(update={"url": node.ari_url})) as ari:
            for ch in await ari.channels():
                try:
                    await ari.hangup(ch.id)
                except AriError:
                    pass


@pytest.fixture
async def cluster_daemon(cluster: Cluster, stack, tmp_path) -> AsyncIterator[Any]:  # noqa: ANN001
    """make(operators, node_lost_after) -> an in-process daemon over both nodes, resynced."""
    from siaga112.app import Daemon

    made: list[Daemon] = []

    async def make(operators: list[str], node_lost_after: float = 5.0,
                   keep_choices: bool = False) -> Daemon:
        await _hang_up_everything(cluster)
        if not keep_choices:
            await set_choices({op: "available" if op in operators else "logged_out"
                               for op in OPERATORS})
        nodes = [{"name": n.name, "url": n.ari_url} for n in cluster.nodes]
        daemon = Daemon(daemon_settings(stack, tmp_path, ari={
            "nodes": nodes, "node_lost_after": node_lost_after}))
        await daemon.start()
        made.append(daemon)
        await asyncio.wait_for(daemon.stasis.resynced.wait(), 15)
        return daemon

    yield make
    for daemon in made:
        await daemon.shutdown(grace=2)
    await _hang_up_everything(cluster)


async def _records(daemon: Any, since: datetime, n: int) -> list[Any]:
    """The records of the n calls since `since`, once all n have ended."""
    async def ended() -> list[Any] | None:
        await daemon.writer.wait_idle(5)
        found = await daemon.repository.list_calls(since=since, limit=500)
        done = [c for c in found if c.ended_at is not None]
        return done if len(done) >= n else None
    return await wait_for(ended, 30, f"{n} ended calls in the records")  # type: ignore[no-any-return]


async def test_one_queue_and_one_desk_over_both_nodes(cluster, cluster_daemon, phones) -> None:
    """Calls from both trunks land on both nodes; one daemon serves them all from one queue:
    the longest idle operator takes the next call whichever node it is on, and the
    operator's leg is made on the caller's node."""
    ops = ["op1", "op2", "op3"]
    daemon = await cluster_daemon(ops)
    for n in range(1, 4):
        await phones.operator(n, ring=0.2, talk=0.8, calls=None)
    since = utcnow()
    # One caller at a time: each finds every operator free.
    for i in range(6):
        call = await phones.citizen(mobile_number(), MOBILE if i % 2 else LANDLINE, hold=None)
        result = await call.wait(20)
        assert result.ok, result.explain()
    one_by_one = sorted(await _records(daemon, since, 6), key=lambda c: c.arrived_at)
    taken_by = [c.operator for c in one_by_one]
    assert {c.call_id.split("-")[0] for c in one_by_one} == {"node1", "node2"}, one_by_one
    assert all(c.disposition == "genuine" for c in one_by_one), one_by_one
    # Longest idle across the centre: every operator takes a call before anyone's second,
    # whichever node each call came in on.
    assert sorted(taken_by[:3]) == ops and taken_by[3:] == taken_by[:3], taken_by

    # 40 callers from both trunks, more than the desk can take at once: all are served.
    since = utcnow()
    calls = []
    for i in range(40):
        calls.append(await phones.citizen(mobile_number(), MOBILE if i % 2 else LANDLINE,
                                          hold=None))
        await asyncio.sleep(0.25)
    for call in calls:
        result = await call.wait(60)
        assert result.ok, result.explain()
    burst = await _records(daemon, since, 40)
    by_node = Counter(c.call_id.split("-")[0] for c in burst)
    assert set(by_node) == {"node1", "node2"} and sum(by_node.values()) == 40, by_node
    assert Counter(c.disposition for c in burst) == {"genuine": 40}, burst
    assert {c.operator for c in burst} == set(ops)
    print(f"\n[cluster] one daemon over both nodes: 40 callers served, by node {dict(by_node)}, "
          f"by operator {dict(Counter(c.operator for c in burst))}")


async def test_node_killed_under_load_its_calls_are_dropped_and_new_ones_served(
        cluster, cluster_daemon, phones) -> None:
    """kill -9 of node 1's Asterisk with calls connected on both nodes: node 1's calls end
    `dropped` in the records (the callback list has them), node 2's go on, and every call
    placed 5 s after the kill or later reaches an operator on node 2."""
    ops = [f"op{n}" for n in range(1, 7)]
    daemon = await cluster_daemon(ops, node_lost_after=2.0)
    for n in range(1, 7):
        await phones.operator(n, ring=0.2, talk=6.0, calls=None)
    since = utcnow()
    before = [mobile_number() for _ in range(4)]
    for i, number in enumerate(before):
        await phones.citizen(number, MOBILE if i % 2 else LANDLINE, hold=None)
    await wait_for(lambda: sum(s.state is CallState.CONNECTED
                               for s in daemon.stasis.sessions.values()) == 4, 15,
                   "4 calls connected")
    on_node = Counter(cid.split("-")[0] for cid in daemon.stasis.sessions)
    assert on_node == {"node1": 2, "node2": 2}, on_node

    node1 = cluster.node("node1")
    killed = _kill9(node1)
    placed: list[tuple[float, str, Any]] = []
    try:
        while time.monotonic() - killed < 8:
            number = mobile_number()
            placed.append((time.monotonic() - killed, number,
                           await phones.citizen(number, MOBILE, hold=None)))
            await asyncio.sleep(1.0)
        late = [(at, number, call) for at, number, call in placed if at >= 5.0]
        for _, _, call in late:
            result = await call.wait(40)
            assert result.ok, result.explain()
        records = {c.caller: c for c in await _records(daemon, since, 4 + len(late))}
        for at, number, _ in late:
            rec = records[e164(number)]
            assert rec.call_id.startswith("node2-") and rec.operator in ops, (at, rec)
            assert rec.disposition == "genuine", rec
        dispositions = Counter((records[e164(n)].call_id.split("-")[0],
                                records[e164(n)].disposition) for n in before)
        assert dispositions == {("node1", "dropped"): 2, ("node2", "genuine"): 2}, dispositions
        dropped = [c for c in records.values() if c.disposition == "dropped"]
        assert all(c.caller and c.operator for c in dropped), dropped
        callbacks = {cb.caller for cb in await list_callbacks(daemon.engine, "open", 50)}
        assert {c.caller for c in dropped} <= callbacks, "dropped callers are to be called back"
        print(f"\n[cluster] node1 killed under load: {len(dropped)} calls dropped with it, "
              f"{len(late)} of {len(late)} calls placed 5-8 s after the kill served on node2")
    finally:
        procs.stop_pid(node1.pidfile, timeout=5)
        await asyncio.to_thread(node1.up)


async def _bridged_on(c: Cluster) -> dict[str, list[str]]:
    """Node -> the calls' bridges there with two parties (citizen and operator)."""
    from siaga112.ari.client import AriClient

    found: dict[str, list[str]] = {}
    for node in c.nodes:
        async with AriClient(ari_settings().model_copy(update={"url": node.ari_url})) as ari:
            found[node.name] = await bridged_calls(ari)
    return found


async def _waiting_on(c: Cluster) -> dict[str, int]:
    from siaga112.ari.client import AriClient

    found: dict[str, int] = {}
    for node in c.nodes:
        async with AriClient(ari_settings().model_copy(update={"url": node.ari_url})) as ari:
            found[node.name] = await holding_count(ari)
    return found


async def test_standby_takes_back_the_calls_of_both_nodes(cluster, stack, phones,
                                                          tmp_path) -> None:
    """Daemons a (active) and b (standby), each over both nodes. kill -9 of a with a call
    connected and a caller waiting on each node: b takes over, both connected calls stay
    connected, both waiting callers reach an operator."""
    await _hang_up_everything(cluster)
    await set_choices({op: "available" if op in ("op1", "op2") else "logged_out"
                       for op in OPERATORS})
    nodes = "".join(f'[[ari.nodes]]\nname = "{n.name}"\nurl = "{n.ari_url}"\n'
                    for n in cluster.nodes)
    async with pair(stack, tmp_path, extra=nodes) as (a, b, _prefix):
        for n in (1, 2):
            await phones.operator(n, ring=0.2, talk=None)  # stays on the call
        connected = [await phones.citizen(mobile_number(), MOBILE if i else LANDLINE, hold=16.0)
                     for i in range(2)]
        await wait_for(lambda: _each_node(_bridged_on(cluster), 1), 15,
                       "a call connected on each node")
        waiting = [await phones.citizen(mobile_number(), MOBILE if i else LANDLINE, hold=None)
                   for i in range(2)]
        await wait_for(lambda: _each_node(_waiting_on(cluster), 1), 15,
                       "a caller waiting on each node")
        bridges = await _bridged_on(cluster)
        killed = time.monotonic()
        a.kill9()
        await wait_for(lambda: len(log_events(b.log, "resynced")) >= 2, 15,
                       "daemon b took back both nodes")
        took = time.monotonic() - killed
        resyncs = log_events(b.log, "resynced")
        assert sum(r["taken_back"] for r in resyncs) == 4, resyncs
        print(f"\n[cluster] standby took back the calls of both nodes {took:.2f} s after "
              f"kill -9 of the active")
        # The connected calls were never cut: the same bridges, both parties in each.
        assert await _bridged_on(cluster) == bridges
        # op3 logs in at the desk phone: the waiting callers, taken back, reach it.
        await phones.operator(3, ring=0.2, talk=1.0, calls=2)
        code = await phones.code(3, "*11")
        assert code.ok, code.explain()
        for w in waiting:
            result = await w.wait(30)
            assert result.ok, result.explain()
        for c in connected:
            result = await c.wait(30)
            assert result.ok and result.events("bye_sent"), result.explain()


async def _each_node(found: Any, n: int) -> bool:
    value = await found
    return all((len(v) if isinstance(v, list) else v) >= n for v in value.values())


async def test_operator_states_survive_a_restart_of_both_nodes(cluster, cluster_daemon,
                                                               phones) -> None:
    """What operators chose at their desk phones (through the proxy, on whichever node) is
    kept in PostgreSQL: both nodes restarted and a new daemon started, it is all still there."""
    first = await cluster_daemon(["op1", "op2", "op3"])
    for n, code, state in [(1, "*13", "paused"), (2, "*12", "logged_out")]:
        result = await phones.code(n, code)
        assert result.ok, result.explain()
        await wait_for(lambda n=n, s=state: _is(stored_choice(f"op{n}"), s), 5, f"op{n} {state}")
    await first.shutdown(grace=2)
    for node in cluster.nodes:
        await asyncio.to_thread(node.down)
    for node in cluster.nodes:
        await asyncio.to_thread(node.up)
    second = await cluster_daemon(["op1", "op2", "op3"], keep_choices=True)
    desk = second.desk
    assert desk.get("op1").state is OperatorState.PAUSED
    assert desk.get("op2").state is OperatorState.LOGGED_OUT
    assert desk.get("op3").state is OperatorState.AVAILABLE


async def _is(value: Any, wanted: str) -> bool:
    return (await value) == wanted
