"""Names of a call's legs, bridges and dialplan contexts in Asterisk. The citizen's channel id
is the call id (Asterisk's uniqueid); every leg we dial gets an id that starts with it, and each
call has a fixed bridge id. So after a restart the daemon can tell from Asterisk alone which
channel belongs to which call.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

# Callers wait in one of HOLDING_BRIDGES holding bridges, chosen by their channel id. Asterisk
# resets every member's BRIDGEPEER variables whenever anyone joins or leaves a bridge, so one
# bridge for the whole queue cost each arrival and each departure work for every caller
# waiting: at 140 calls/s Asterisk's CPU per call went from 17.5 to 7.7 ms with 16 (perf,
# docs/load-testing.md, "Fourth round").
HOLDING_BRIDGES = 16
HOLDING_PREFIX = "siaga112-holding"  # also the one holding bridge of daemons before 2026-12
# Dialplan contexts a call is sent to when it leaves the daemon (dialplan/extensions.conf).
FALLBACK_CONTEXT = "fallback"  # Queue(siaga112-fallback): every desk phone rings
OVERFLOW_CONTEXT = "overflow"  # Dial(queue.overflow), then the fallback queue
CALL_BRIDGE_PREFIX = "siaga112-call-"


class LegKind(StrEnum):
    CITIZEN = "citizen"
    OPERATOR = "operator"
    AGENCY = "agency"


@dataclass(frozen=True)
class Leg:
    call_id: str
    kind: LegKind
    party: str = ""  # operator name or agency code
    line: int = 0  # agency line index (0 = duty line)
    attempt: int = 0


def operator_leg(call_id: str, operator: str, attempt: int) -> str:
    return f"{call_id}-op-{operator}-{attempt}"


def agency_leg(call_id: str, code: str, line: int, attempt: int) -> str:
    return f"{call_id}-ag-{code}-{line}-{attempt}"


def holding_bridges() -> list[str]:
    return [f"{HOLDING_PREFIX}-{n}" for n in range(HOLDING_BRIDGES)]


def holding_bridge(channel_id: str) -> str:
    """The holding bridge this caller waits in (the same one from every daemon)."""
    return f"{HOLDING_PREFIX}-{zlib.crc32(channel_id.encode()) % HOLDING_BRIDGES}"


def is_holding(bridge_id: str) -> bool:
    """One of the holding bridges, or the single one of older daemons (its callers, found
    waiting after an upgrade, are in the queue)."""
    if bridge_id == HOLDING_PREFIX:
        return True
    shard = bridge_id.removeprefix(HOLDING_PREFIX + "-")
    return shard != bridge_id and shard.isdigit()


# A call bridged again (requeued after its bridge was made, or taken back after a restart)
# gets a bridge id of its own: Asterisk keeps a destroyed bridge's id taken for a while (its
# stasis topic outlives it; asterisk/asterisk#1094), and a create with that id answers 409
# while the bridge itself is 404. Reusing it, an operator answered every 4 s and the caller
# was never put through (a fresh clone's chaos test, a slow hour).
AGAIN = "~"


def call_bridge(call_id: str) -> str:
    """The call's first bridge."""
    return CALL_BRIDGE_PREFIX + call_id


def fresh_call_bridge(call_id: str) -> str:
    """A bridge id for the call that no earlier bridge of it had."""
    return f"{CALL_BRIDGE_PREFIX}{call_id}{AGAIN}{uuid.uuid4().hex[:8]}"


def call_of_bridge(bridge_id: str) -> str | None:
    if not bridge_id.startswith(CALL_BRIDGE_PREFIX):
        return None
    return bridge_id[len(CALL_BRIDGE_PREFIX):].partition(AGAIN)[0]


_OPERATOR_LEG = re.compile(r"(?P<call>.+)-op-(?P<op>[^-]+)-(?P<attempt>\d{1,6})")
_AGENCY_LEG = re.compile(r"(?P<call>.+)-ag-(?P<code>[^-]+)-(?P<line>\d{1,3})-(?P<attempt>\d{1,6})")


def parse(channel_id: str) -> Leg:
    """The leg a channel id names. A call id may itself hold '-' (a cluster node's Asterisk
    prefixes its uniqueids with its systemname: 'node1-1764500000.12'), so a leg's parts are
    read from the end."""
    m = _OPERATOR_LEG.fullmatch(channel_id)
    if m:
        return Leg(m["call"], LegKind.OPERATOR, m["op"], attempt=int(m["attempt"]))
    m = _AGENCY_LEG.fullmatch(channel_id)
    if m:
        return Leg(m["call"], LegKind.AGENCY, m["code"], int(m["line"]), int(m["attempt"]))
    return Leg(channel_id, LegKind.CITIZEN)


def node_of(resource_id: str, nodes: Collection[str]) -> str | None:
    """The cluster node a channel, leg or bridge of ours is on, or None: the node's name
    (its Asterisk's systemname) starts its call ids, and our ids put at most two words before
    a call id ('siaga112-call-node1-1764500000.12', 'siaga112-callback-node2-cb...')."""
    for word in resource_id.split("-", 3)[:3]:
        if word in nodes:
            return word
    return None
