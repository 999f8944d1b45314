"""One ARI over a cluster's nodes (ari/cluster.py): each request goes to the node the call lives
on; the holding bridge is on every node; a node down long enough loses its calls, which close
`dropped` while the other node's calls go on (stasis.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from structlog.testing import capture_logs
from tests.fakes import FakeAri, ListSink, operator, rematch
from tests.unit.test_session import citizen, settle

from siaga112 import legs
from siaga112.agencies import Directory
from siaga112.ari.client import AriClient, Unreachable
from siaga112.ari.cluster import ClusterAri
from siaga112.call import CallDeps
from siaga112.holding import HoldingBridge
from siaga112.model import CallState, OperatorState
from siaga112.operators import OperatorDesk
from siaga112.queue import CallQueue
from siaga112.screening import Screening
from siaga112.settings import Settings
from siaga112.stasis import Stasis

CALL1 = "node1-1764500000.1"
CALL2 = "node2-1764500000.1"  # the same uniqueid on the other node: the prefix keeps them apart


def cluster(**fail: Exception) -> tuple[ClusterAri, FakeAri, FakeAri]:
    n1, n2 = FakeAri(), FakeAri(fail=dict(fail))
    return ClusterAri(cast(dict[str, AriClient], {"node1": n1, "node2": n2})), n1, n2


def names(ari: FakeAri) -> list[str]:
    return [c[0] for c in ari.calls]


async def test_each_request_goes_to_the_node_of_its_call() -> None:
    ari, n1, n2 = cluster()
    await ari.answer(CALL2)
    await ari.originate("PJSIP/op1", legs.operator_leg(CALL2, "op1", 1), "siaga112", "operator")
    await ari.create_bridge(legs.call_bridge(CALL2), "mixing")
    await ari.add_to_bridge(legs.call_bridge(CALL2), [CALL2, legs.operator_leg(CALL2, "op1", 1)])
    n2.rx[legs.operator_leg(CALL2, "op1", 1)] = 7
    assert (await ari.rtp_statistics(legs.operator_leg(CALL2, "op1", 1))).rxcount == 7
    await ari.hangup(legs.agency_leg(CALL2, "01", 0, 1))
    assert names(n2) == ["answer", "originate", "create_bridge", "add_to_bridge",
                         "rtp_statistics", "hangup"]
    assert n1.calls == []
    await ari.answer(CALL1)
    assert n1.calls == [("answer", CALL1)]


async def test_the_holding_bridges_are_on_every_node_and_a_caller_joins_their_own() -> None:
    ari, n1, n2 = cluster()
    await HoldingBridge(ari, 30).ensure()
    assert sorted(b for _, b, *_ in n1.called("create_bridge")) == sorted(legs.holding_bridges())
    assert n1.called("create_bridge") == n2.called("create_bridge")
    holding = legs.holding_bridge(CALL2)
    n1.members[holding] = [CALL1]
    n2.members[holding] = [CALL2]
    await ari.add_to_bridge(holding, CALL2)
    assert n2.called("add_to_bridge") == [("add_to_bridge", holding, CALL2)]
    assert n1.called("add_to_bridge") == []
    bridge = await ari.get_bridge(holding)
    assert sorted(bridge.channels) == [CALL1, CALL2]


async def test_ids_without_a_node_stay_on_the_node_they_were_made_on() -> None:
    ari, n1, n2 = cluster()
    ari.mark_up("node2")  # node1's socket is down: new legs are made on node2
    await ari.originate("PJSIP/op1", "cb-1-desk", "siaga112-callback", "operator")
    await ari.request("POST", "/channels", {"channelId": "cb-1-citizen", "endpoint": "x"})
    await ari.hangup("cb-1-desk")
    await ari.hangup("cb-1-citizen")
    playback = await ari.play(CALL2, "sound:x", "pb-7")
    await ari.stop_playback(playback.id)
    assert n1.calls == []
    assert names(n2)[-2:] == ["play", "stop_playback"]
    ari.mark_up("node1")
    await ari.hangup("cb-1-desk")  # still node2's leg, though node1 is home again
    assert n1.calls == []


async def test_a_node_that_does_not_answer_is_left_out_of_the_whole_view() -> None:
    ari, n1, _ = cluster(application=Unreachable("GET", "/applications/x", 0, "refused"))
    n1.alive = {CALL1}
    with capture_logs() as logs:
        app = await ari.application("siaga112")
    assert app.channel_ids == [CALL1]
    assert [e["node"] for e in logs if e["event"] == "ari_node_left_out"] == ["node2"]
    n1.fail["application"] = Unreachable("GET", "/applications/x", 0, "refused")
    try:
        await ari.application("siaga112")
    except Unreachable:
        pass
    else:
        raise AssertionError("no node answered: the caller must know")


def build(ari: ClusterAri, lost_after: float) -> tuple[Stasis, OperatorDesk, ListSink]:
    s = Settings.model_validate({
        "silence": {"enabled": False}, "queue": {"wrapup": 0},
        "ari": {"nodes": [{"name": "node1", "url": "http://127.0.0.11:8088/ari"},
                          {"name": "node2", "url": "http://127.0.0.12:8088/ari"}],
                "node_lost_after": lost_after}})
    sink = ListSink()

    async def no_blocks() -> list[Any]:
        return []

    queue_ref: list[CallQueue] = []
    desk = OperatorDesk(["op1", "op2"], ari, sink, 0, True, on_change=lambda: rematch(queue_ref))
    queue = CallQueue(desk, on_change=lambda: None)
    queue_ref.append(queue)
    deps = CallDeps(ari=ari, settings=s, screening=Screening(no_blocks), queue=queue, desk=desk,
                    sink=sink, directory=Directory(s.agencies), holding=HoldingBridge(ari, 30),
                    node_lost=ari.node_lost)
    return Stasis(deps, cluster=ari), desk, sink


async def test_a_dead_node_s_calls_close_dropped_and_the_other_node_s_go_on() -> None:
    ari, n1, n2 = cluster()
    stasis, desk, sink = build(ari, lost_after=0.05)
    for node in ("node1", "node2"):
        stasis.node_up(node)
    stasis.on_event(citizen(CALL1, "081111111111"))
    stasis.on_event(citizen(CALL2, "082222222222"))
    await settle(stasis)
    # Each caller's operator leg was originated on the caller's own node.
    assert [c[2] for c in n1.called("originate")] == [legs.operator_leg(CALL1, "op1", 1)]
    assert [c[2] for c in n2.called("originate")] == [legs.operator_leg(CALL2, "op2", 1)]
    ringing_on_2 = operator(desk, "op2")
    assert ringing_on_2.state is OperatorState.RINGING

    for name, err in [("hangup", "refused"), ("destroy_bridge", "refused")]:
        n2.fail[name] = Unreachable("X", "/", 0, err)
    stasis.node_down("node2")
    await asyncio.sleep(0.02)
    assert CALL2 in stasis.sessions, "not lost before node_lost_after"
    await asyncio.sleep(0.1)
    await settle(stasis)

    ended = [e for e in sink.calls if e.type.value == "ended"]
    assert [(e.call_id, e.data["disposition"], e.data["cause"]) for e in ended] == [
        (CALL2, "dropped", "node node2 lost")]
    assert CALL2 not in stasis.sessions
    assert stasis.sessions[CALL1].state is CallState.RINGING_OPERATOR
    assert operator(desk, "op2").state is not OperatorState.RINGING, "op2 is free again"
    assert n2.called("hangup") == [], "nothing is asked of a dead node"
    assert ari.node_lost(CALL2) and not ari.node_lost(CALL1)
    stasis.node_up("node2")
    assert not ari.node_lost(CALL2), "a node back is alive again"
    await stasis.close()


async def test_a_node_back_before_node_lost_after_keeps_its_calls() -> None:
    ari, _, _ = cluster()
    stasis, _, sink = build(ari, lost_after=0.05)
    stasis.node_up("node2")
    stasis.on_event(citizen(CALL2))
    await settle(stasis)
    stasis.node_down("node2")
    stasis.node_up("node2")
    await asyncio.sleep(0.1)
    assert CALL2 in stasis.sessions
    assert "ended" not in sink.types()
    await stasis.close()
