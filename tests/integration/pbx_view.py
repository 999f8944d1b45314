"""What the test PBX holds now, read over ARI: the tests' view of calls in Asterisk."""

from __future__ import annotations

from siaga112 import legs
from siaga112.ari.client import AriClient, NotFound


async def bridged_calls(ari: AriClient) -> list[str]:
    """The calls' own bridges with two parties in them (citizen and operator)."""
    return [b.id for b in await ari.bridges()
            if legs.call_of_bridge(b.id) and len(b.channels) == 2]


async def holding_count(ari: AriClient) -> int:
    """Callers in the holding bridge (waiting in the queue)."""
    try:
        return len((await ari.get_bridge(legs.HOLDING_BRIDGE)).channels)
    except NotFound:
        return 0


async def at_least(value: object, n: int) -> bool:
    return (await value) >= n  # type: ignore[misc]
