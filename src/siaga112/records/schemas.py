"""Typed rows the repository returns to the CLI and the HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CallRecord(_Row):
    call_id: str
    caller_raw: str | None = None
    caller: str | None = None
    line_type: str | None = None
    trunk: str | None = None
    arrived_at: datetime | None = None
    answered_at: datetime | None = None
    queued_at: datetime | None = None
    operator_answered_at: datetime | None = None
    agency_bridged_at: datetime | None = None
    ended_at: datetime | None = None
    wait_seconds: float | None = None
    talk_seconds: float | None = None
    operator: str | None = None  # the first operator connected
    operators: list[str] = []  # every operator connected, in order (after a requeue, more)
    disposition: str | None = None
    category: str | None = None
    note: str | None = None
    agencies: list[str] = []
    priority: bool = False
    flags: list[str] = []
    recording_path: str | None = None
    recording_seconds: float | None = None
    location: dict[str, Any] | None = None  # the latest location with coordinates, and its source
    callback_of: str | None = None  # a callback call: the call it returns
    updated_at: datetime


class CallEventRecord(_Row):
    event_id: uuid.UUID
    call_id: str
    seq: int
    type: str
    at: datetime
    data: dict[str, Any]


class DispatchRecord(_Row):
    dispatch_id: str
    call_id: str
    agency: str | None = None
    line: str | None = None
    requested_at: datetime | None = None
    answered_at: datetime | None = None
    accepted_at: datetime | None = None
    moving_at: datetime | None = None
    outcome: str | None = None
    overdue_at: datetime | None = None


class DispatchRow(_Row):
    """A dispatch the clock looks at: requested, no team moving yet."""

    dispatch_id: str
    call_id: str
    agency: str | None = None
    requested_at: datetime
    accepted_at: datetime | None = None


class Complaint(_Row):
    id: int
    call_id: str | None = None
    caller: str
    text: str
    filed_at: datetime
    by: str
    answered_at: datetime | None = None
    answer: str | None = None
    answered_by: str | None = None
    overdue_at: datetime | None = None


class Callback(_Row):
    """A citizen to call back (records/callbacks.py); call_id is the call to return."""

    call_id: str
    caller: str
    caller_raw: str | None = None
    line_type: str | None = None
    trunk: str | None = None
    reason: str  # abandoned | silent | dropped
    arrived_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: int = 0
    last_attempt_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by_call: str | None = None
    closed_reason: str | None = None  # called_back | called_again


class CallDetail(BaseModel):
    call: CallRecord
    events: list[CallEventRecord]
    dispatches: list[DispatchRecord]


class BlockRecord(_Row):
    number: str
    blocked_until: datetime | None
    reason: str
    by: str
    created_at: datetime
    expired_at: datetime | None
    active: bool


class Referral(_Row):
    number: str
    count: int
    first_at: datetime
    last_at: datetime
    referred_at: datetime
    exported_at: datetime | None


class OperatorKpi(BaseModel):
    operator: str
    calls: int
    mean_talk_seconds: float | None
    prank: int
    ghost: int


class AgencyKpi(BaseModel):
    agency: str
    dispatches: int
    mean_accept_seconds: float | None  # requested -> accepted
    mean_moving_seconds: float | None  # requested -> team moving
    overdue: int


class Kpis(BaseModel):
    """Over calls that arrived in [since, until). Percentages are of offered calls: every call
    but those rejected as blocked."""

    since: datetime
    until: datetime
    calls: int
    offered: int
    answered: int  # reached an operator
    answered_within_10s_pct: float | None
    mean_wait_seconds: float | None  # arrival -> operator, answered calls
    p90_wait_seconds: float | None
    abandoned_pct: float | None
    prank_pct: float | None
    ghost_pct: float | None
    # Callers to call back (abandoned before an operator, silent, dropped) among these calls,
    # and the share an operator called back and reached within 5 minutes of the call's end.
    callbacks: int = 0
    called_back_within_5min_pct: float | None = None
    per_operator: list[OperatorKpi]
    per_agency: list[AgencyKpi]
