"""The cluster topology (docs/cluster.md): Kamailio at 127.0.0.1:5060 in front of two Asterisk
nodes, real processes on loopback, real SIPp phones.

The single stack's PBX binds 127.0.0.1:5060 as the proxy does, so this module stops it, runs the
cluster, and starts the single PBX again at the end, whatever happened (its fixture). It runs
without daemons: every call on a node goes the dialplan's fail-open way, Queue() to the desk
phones, which is what shows the proxy and the nodes working.

- calls from the trunks are spread over both nodes, desk-phone codes reach a node (identified
  by the proxy's X-Siaga112-Source header, not by their source address);
- kill -9 of node 1's Asterisk: the proxy retries calls on node 2 and stops sending there; every
  call placed 5 s after the kill or later is served on node 2.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator

import pytest

from siaga112 import procs
from siaga112_testkit.cluster.stack import Cluster
from siaga112_testkit.devstack.pbx import Pbx
from tests.conftest import REPO, STATE, wait_for
from tests.integration.phones import LANDLINE, MOBILE, invites, mobile_number

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
    pid = procs.read_pid(node1.pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
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
