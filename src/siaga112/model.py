"""Typed domain models shared by every step of a call: what the call path emits, and what the
records writer, the MQTT notifier and the HTTP API consume.

A call's way: ARI event in (stasis.py) -> its session (call/session.py) -> screening
(call/arrival.py, screening.py) -> queue (call/waiting.py, queue.py) -> operator bridge
(call/operator_leg.py) -> agency bridge (call/agency_leg.py) -> records (records/) and events out
(notifier.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class LineType(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    UNKNOWN = "unknown"


class CallState(StrEnum):
    ARRIVED = "arrived"
    SCREENED = "screened"
    REJECTED = "rejected"  # blocked number, strict mode or no bypass
    QUEUED = "queued"
    RINGING_OPERATOR = "ringing_operator"
    CONNECTED = "connected"
    ENDED = "ended"


class Disposition(StrEnum):
    GENUINE = "genuine"
    PRANK = "prank"
    GHOST = "ghost"
    BLOCKED = "blocked"
    ABANDONED = "abandoned"
    FALLBACK = "fallback"
    DROPPED = "dropped"  # lost with a node (the HA work); goes on the callback list
    CALLBACK = "callback"  # an operator's call back to a citizen (callbacks/), not a 112 call


class OperatorState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAPUP = "wrapup"
    PAUSED = "paused"


class ChosenState(StrEnum):
    """What an operator can choose (desk-phone codes, the API); the other states of
    OperatorState come from calls."""

    AVAILABLE = "available"
    PAUSED = "paused"
    LOGGED_OUT = "logged_out"


CHOSEN_STATES = frozenset(OperatorState(s.value) for s in ChosenState)


class CallEventType(StrEnum):
    ARRIVED = "arrived"  # data: caller_raw, caller, line_type, trunk, channel_id
    ANSWERED = "answered"  # the daemon answered the citizen
    SCREENED = "screened"  # data: blocked (bool), reason
    BLOCKED_ANNOUNCED = "blocked_announced"
    BYPASS = "bypass"  # blocked caller pressed the bypass digit
    SILENT_PROMPT = "silent_prompt"
    SILENT_EMERGENCY = "silent_emergency"  # silent caller pressed 5 5
    REQUEUED = "requeued"  # data: reason ("operator_gone": the operator left while we were away)
    OVERFLOW = "overflow"  # data: reason (no_operator | max_wait), target
    QUEUED = "queued"  # data: position, priority
    RINGING = "ringing"  # data: operator
    OPERATOR_NO_ANSWER = "operator_no_answer"  # data: operator
    CONNECTED = "connected"  # data: operator
    OPERATOR_LEFT = "operator_left"  # data: operator
    CATEGORY = "category"  # data: category
    DISPOSITION = "disposition"  # data: disposition, by
    NOTE = "note"  # data: text, by (the operator's free-text note; the latest is the record's)
    AGENCY_REQUESTED = "agency_requested"  # data: agency, dispatch_id
    AGENCY_LINE_FAILED = "agency_line_failed"  # data: agency, line, reason
    AGENCY_JOINED = "agency_joined"  # data: agency, line
    AGENCY_ACCEPTED = "agency_accepted"  # data: agency
    TEAM_MOVING = "team_moving"  # data: agency
    OVERDUE = "overdue"  # data: agency, kind
    RECORDING = "recording"  # data: name, path
    RESYNCED = "resynced"
    HANDED_BACK = "handed_back"  # data: reason (an exception in our handler)
    ENDED = "ended"  # data: disposition, cause, hangup_by (caller|operator|system)
    # The caller's location (location/): data: source (network | network_ref | aml), lat, lon,
    # radius_m, method, time, ...; or source and error when it could not be had.
    LOCATION = "location"
    # Instant recall (call/recall.py): the operator hears the call's last seconds again on their own
    # leg. RECALL data: operator, by, seconds; RECALL_RETURNED data: operator, by, reason
    # (returned: '#' or the API; played: it played to its end).
    RECALL = "recall"
    RECALL_RETURNED = "recall_returned"
    # A supervisor on the call (supervision.py), the audit of every use. Data: supervision_id,
    # supervisor (desk phone), mode (listen | whisper | barge), operator, by (desk phone or API
    # token name); SUPERVISION_ENDED adds reason and seconds.
    SUPERVISION_STARTED = "supervision_started"
    SUPERVISION_ENDED = "supervision_ended"


class CallEvent(BaseModel):
    """One step of one call. Idempotent by event_id: writing it twice stores it once."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    call_id: str
    seq: int
    type: CallEventType
    at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = {}


_last_json: tuple[BaseModel, bytes] | None = None


def event_json(event: CallEvent | OperatorEvent) -> bytes:
    """An event's JSON, made once for the sinks that hand it on one after the other (the
    journal, then MQTT: sinks.FanOut): the last event asked for is remembered, by identity
    (events are frozen; the reference held keeps its id from being reused)."""
    global _last_json
    last = _last_json
    if last is not None and last[0] is event:
        return last[1]
    raw = event.__pydantic_serializer__.to_json(event)
    _last_json = (event, raw)
    return raw


class OperatorEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    operator: str
    state: OperatorState
    reason: str | None = None
    at: datetime = Field(default_factory=utcnow)


class BlockEntry(BaseModel):
    number: str  # E.164
    blocked_until: datetime | None  # None: no expiry (manual permanent)
    reason: str
    by: str


class QueueEntry(BaseModel):
    call_id: str
    caller: str | None
    line_type: LineType
    since: datetime
    priority: bool
    flags: list[str] = []  # "blocked_bypass", "silent", "silent_emergency"


class QueueSnapshot(BaseModel):
    at: datetime = Field(default_factory=utcnow)
    length: int
    entries: list[QueueEntry]


class OperatorSnapshot(BaseModel):
    operator: str
    state: OperatorState
    reachable: bool
    reason: str | None = None
    call_id: str | None = None
    idle_since: datetime | None = None
