"""The holding bridges: each caller waits in the one their channel id names, the announcement
reaches every bridge with someone in it, and the single bridge of older daemons still counts
as the queue."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from tests.fakes import FakeAri

from siaga112 import legs
from siaga112.ari.client import NotFound
from siaga112.ari.models import Bridge
from siaga112.holding import HoldingBridge


def test_a_caller_has_one_holding_bridge_from_every_daemon() -> None:
    ids = [f"node1-1796057217.{n}" for n in range(4000)]
    assert [legs.holding_bridge(c) for c in ids] == [legs.holding_bridge(c) for c in ids]
    assert {legs.holding_bridge(c) for c in ids} == set(legs.holding_bridges())
    # Spread: no bridge holds more than twice its share of a long queue.
    assert max(Counter(legs.holding_bridge(c) for c in ids).values()) < \
        2 * len(ids) / legs.HOLDING_BRIDGES


def test_holding_bridges_are_told_from_other_bridges() -> None:
    assert all(legs.is_holding(b) for b in legs.holding_bridges())
    assert legs.is_holding("siaga112-holding")  # made by a daemon before 2026-12
    for other in ("siaga112-call-1796057217.3", "siaga112-holding-", "siaga112-holding-x",
                  "siaga112-holdingx", "siaga112-holding-1-2", "other-holding-1"):
        assert not legs.is_holding(other), other


async def test_ensure_makes_every_holding_bridge_and_add_uses_the_callers_own() -> None:
    ari = FakeAri()
    holding = HoldingBridge(ari, 30)
    ari.members[legs.holding_bridge("c1")] = ["c1"]  # Asterisk's view once the add is done
    await holding.ensure()
    await holding.add("c1")
    made = {b for _, b, kind in ari.called("create_bridge") if kind == "holding"}
    assert made == set(legs.holding_bridges())
    assert ari.called("add_to_bridge") == [("add_to_bridge", legs.holding_bridge("c1"), "c1")]


async def test_the_announcement_plays_in_each_bridge_where_someone_waits() -> None:
    ari = FakeAri()
    a, b = legs.holding_bridges()[:2]
    ari.members.update({a: ["c1", "c2"], b: [], "siaga112-holding": ["c3"],
                        legs.call_bridge("c4"): ["c4", "c4-op-op1-1"]})
    await HoldingBridge(ari, 30).announce()
    played = sorted(bridge for _, bridge, _ in ari.called("bridge_play"))
    assert played == sorted([a, "siaga112-holding"])


@dataclass
class OneBridgeRefused(FakeAri):
    """Asterisk refuses to make one holding bridge (the stale state of 2026-11-30: 409 on
    create, 404 on get)."""

    refused: str = ""

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> Bridge:
        if bridge_id == self.refused:
            self.calls.append(("create_bridge", bridge_id, kind))
            raise NotFound("GET", f"/bridges/{bridge_id}", 404, "Bridge not found")
        return await super().create_bridge(bridge_id, kind, name)


async def test_a_holding_bridge_that_cannot_be_made_keeps_only_its_own_callers_out() -> None:
    ids = [f"1796057217.{n}" for n in range(64)]
    bad = legs.holding_bridge(ids[0])
    good = next(c for c in ids if legs.holding_bridge(c) != bad)
    ari = OneBridgeRefused(refused=bad)
    holding = HoldingBridge(ari, 30)
    with pytest.raises(NotFound):
        await holding.ensure()  # the resync hears of it
    made = len(ari.called("create_bridge"))
    ari.members[legs.holding_bridge(good)] = [good]
    await holding.add(good)  # its bridge was made: no new attempt, straight in
    assert len(ari.called("create_bridge")) == made
    assert ari.called("add_to_bridge") == [("add_to_bridge", legs.holding_bridge(good), good)]
    with pytest.raises(NotFound):
        await holding.add(ids[0])  # its bridge is tried again; the session hands the call back
    assert ari.called("create_bridge")[-1] == ("create_bridge", bad, "holding")
