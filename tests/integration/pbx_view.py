"""What the test PBX holds now, read over ARI: the tests' view of calls in Asterisk."""

from __future__ import annotations

from typing import Any

from siaga112 import legs
from siaga112.ari.client import AriClient


async def bridged_calls(ari: AriClient) -> list[str]:
    """The calls' own bridges with two parties in them (citizen and operator)."""
    return [b.id for b in await ari.bridges()
            if legs.call_of_bridge(b.id) and len(b.channels) == 2]


async def holding_count(ari: AriClient) -> int:
    """Callers in the holding bridges (waiting in the queue)."""
    return len(await holding_channels(ari))


async def holding_channels(ari: AriClient) -> set[str]:
    """The channels in the holding bridges, where callers wait for an operator."""
    return {ch for b in await ari.bridges() if legs.is_holding(b.id) for ch in b.channels}


async def at_least(value: object, n: int) -> bool:
    return (await value) >= n  # type: ignore[misc]


async def connected_and_waiting(phones: Any, ari: AriClient) -> tuple[Any, Any, str, list[Any]]:
    """The scene of the kill tests: op1's phone on a call that stays (the citizen hangs up at
    14 s), and two callers waiting behind it. (op1, that citizen, the call's bridge, the two
    waiting callers), once the PBX shows it so."""
    from tests.conftest import wait_for
    from tests.integration.phones import LANDLINE, MOBILE, mobile_number

    op1 = await phones.operator(1, ring=0.2, talk=None)  # stays on the call
    connected = await phones.citizen(mobile_number(), MOBILE, hold=14.0)
    bridge = (await wait_for(lambda: bridged_calls(ari), 10, "the first call connected"))[0]
    waiting = [await phones.citizen(mobile_number(), LANDLINE, hold=None) for _ in range(2)]
    await wait_for(lambda: at_least(holding_count(ari), 2), 10, "two callers waiting")
    return op1, connected, bridge, waiting
