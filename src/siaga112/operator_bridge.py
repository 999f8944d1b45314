"""The operator bridge: the citizen leaves the holding bridge and talks to the operator in a
mixing bridge with a fixed id per call (legs.call_bridge), which agencies join later."""

from __future__ import annotations

import structlog

from siaga112 import legs
from siaga112.ari.client import AriClient
from siaga112.holding import HoldingBridge

log = structlog.get_logger(__name__)


async def connect_operator(
    ari: AriClient, holding: HoldingBridge, call_id: str, operator_channel: str
) -> str:
    bridge_id = legs.call_bridge(call_id)
    await ari.create_bridge(bridge_id, "mixing", f"112 call {call_id}")
    await holding.remove(call_id)
    try:
        await ari.stop_moh(call_id)
    except Exception:  # noqa: BLE001 - MOH may not be on the channel itself
        pass
    await ari.add_to_bridge(bridge_id, call_id)
    await ari.add_to_bridge(bridge_id, operator_channel)
    log.info("operator_bridged", bridge=bridge_id, operator_channel=operator_channel)
    return bridge_id
