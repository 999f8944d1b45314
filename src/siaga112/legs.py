"""Names of a call's legs, bridges and dialplan contexts in Asterisk. The citizen's channel id
is the call id (Asterisk's uniqueid); every leg we dial gets an id that starts with it, and each
call has a fixed bridge id. So after a restart the daemon can tell from Asterisk alone which
channel belongs to which call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

HOLDING_BRIDGE = "siaga112-holding"
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


def call_bridge(call_id: str) -> str:
    return CALL_BRIDGE_PREFIX + call_id


def call_of_bridge(bridge_id: str) -> str | None:
    return bridge_id[len(CALL_BRIDGE_PREFIX):] if bridge_id.startswith(CALL_BRIDGE_PREFIX) else None


def parse(channel_id: str) -> Leg:
    parts = channel_id.split("-")
    try:
        if len(parts) == 4 and parts[1] == "op":
            return Leg(parts[0], LegKind.OPERATOR, parts[2], attempt=int(parts[3]))
        if len(parts) == 5 and parts[1] == "ag":
            return Leg(parts[0], LegKind.AGENCY, parts[2], int(parts[3]), int(parts[4]))
    except ValueError:
        pass
    return Leg(channel_id, LegKind.CITIZEN)
