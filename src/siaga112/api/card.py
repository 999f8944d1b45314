"""The operator's call card, built from a call's events (pure: no I/O, unit-tested alone).

The events are those the daemon saw live (api/live.py) merged with the call's recorded events
(a console opened after the call began, or a daemon restarted under it), each once by event_id.
What the card says: the caller and the line, how long the caller waited, the flags, the marks,
the note, each agency brought in with its duty line's state and its team-moving clock, and the
location when an event carries one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel

from siaga112.records.console import CallerHistory


class EventLike(Protocol):
    """model.CallEvent (live) or records.schemas.CallEventRecord (recorded)."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any]: ...


class LineState(StrEnum):
    RINGING = "ringing"  # the duty line (or a fallback line) is being dialled
    ANSWERED = "answered"  # on the call
    ACCEPTED = "accepted"  # the agency pressed 1: it takes the case
    MOVING = "moving"  # its team is on the way
    FAILED = "failed"  # every line tried, none answered


class AgencyOnCall(BaseModel):
    agency: str
    dispatch_id: str
    state: LineState
    line: str | None = None  # the line that answered
    failed_lines: list[str] = []  # lines tried that did not answer (fallback tried after one)
    requested_at: datetime
    joined_at: datetime | None = None
    accepted_at: datetime | None = None
    moving_at: datetime | None = None
    moving_due: datetime  # the team-moving promise (agency.moving_deadline_minutes)
    overdue: bool = False


class CallCard(BaseModel):
    call_id: str
    live: bool
    state: str  # arrived | queued | ringing | connected | ended
    caller: str | None = None
    caller_raw: str | None = None
    line_type: str | None = None
    trunk: str | None = None
    arrived_at: datetime | None = None
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    waited_seconds: float | None = None  # arrival to the operator (or to now, or the end)
    operator: str | None = None
    priority: bool = False
    flags: list[str] = []  # blocked_bypass, silent, silent_emergency
    disposition: str | None = None
    category: str | None = None
    note: str | None = None
    agencies: list[AgencyOnCall] = []
    location: dict[str, Any] | None = None
    history: CallerHistory | None = None


def merge(*sources: Iterable[EventLike]) -> list[EventLike]:
    """Every event once (by event_id), in the call's order (seq, then time)."""
    seen: dict[uuid.UUID, EventLike] = {}
    for events in sources:
        for e in events:
            seen.setdefault(e.event_id, e)
    return sorted(seen.values(), key=lambda e: (e.at, e.seq))


def build_card(call_id: str, events: Iterable[EventLike], *, live: bool, now: datetime,
               lines: Mapping[str, int], moving_minutes: float) -> CallCard:
    """The card of `call_id` from its events (in order). `lines`: each agency's number of
    lines (duty line and fallbacks), to tell a line that failed from an agency out of reach."""
    card = CallCard(call_id=call_id, live=live, state="arrived")
    dispatches: dict[str, AgencyOnCall] = {}
    ended_disposition: str | None = None
    for e in events:
        t, d = str(e.type), e.data
        if t == "arrived" and card.arrived_at is None:
            card.arrived_at = e.at
            card.caller, card.caller_raw = d.get("caller"), d.get("caller_raw")
            card.line_type, card.trunk = d.get("line_type"), d.get("trunk")
        elif t == "queued":
            card.state = "queued" if card.connected_at is None else card.state
            card.priority = card.priority or bool(d.get("priority"))
            _flag(card, *(f for f in d.get("flags") or [] if isinstance(f, str)))
        elif t == "bypass":
            _flag(card, "blocked_bypass")
        elif t == "silent_emergency":
            _flag(card, "silent_emergency")
        elif t == "ringing" and card.connected_at is None:
            card.state, card.operator = "ringing", d.get("operator")
        elif t == "operator_no_answer" and card.connected_at is None:
            card.state = "queued"
        elif t == "connected":
            card.state, card.operator = "connected", d.get("operator")
            card.connected_at = card.connected_at or e.at
        elif t == "disposition":
            card.disposition = d.get("disposition")
        elif t == "category":
            card.category = d.get("category")
        elif t == "note":
            card.note = d.get("text")
        elif t == "ended":
            card.state, card.ended_at = "ended", card.ended_at or e.at
            ended_disposition = d.get("disposition")
        elif t in ("agency_requested", "agency_line_failed", "agency_joined", "agency_accepted",
                   "team_moving", "overdue"):
            _dispatch(dispatches, t, e, lines, moving_minutes)
        if t == "location" and "lat" in d:  # the latest with coordinates (one may be an error)
            card.location = {**d, "at": e.at.isoformat()}
    card.disposition = card.disposition or ended_disposition
    if card.arrived_at is not None:
        until = card.connected_at or card.ended_at or now
        card.waited_seconds = round(max(0.0, (until - card.arrived_at).total_seconds()), 1)
    for a in dispatches.values():
        a.overdue = a.overdue or (a.moving_at is None and a.state is not LineState.FAILED
                                  and now >= a.moving_due)
    card.agencies = sorted(dispatches.values(), key=lambda a: a.requested_at)
    return card


def _flag(card: CallCard, *flags: str) -> None:
    card.flags = sorted({*card.flags, *flags})


def _dispatch(dispatches: dict[str, AgencyOnCall], t: str, e: EventLike,
              lines: Mapping[str, int], moving_minutes: float) -> None:
    d = e.data
    dispatch_id, code = d.get("dispatch_id"), d.get("agency")
    if not isinstance(dispatch_id, str):
        return
    a = dispatches.get(dispatch_id)
    if a is None:
        if not isinstance(code, str):
            return
        a = dispatches[dispatch_id] = AgencyOnCall(
            agency=code, dispatch_id=dispatch_id, state=LineState.RINGING, requested_at=e.at,
            moving_due=e.at + timedelta(minutes=moving_minutes))
    if t == "agency_requested":
        a.requested_at = min(a.requested_at, e.at)
        a.moving_due = a.requested_at + timedelta(minutes=moving_minutes)
    elif t == "agency_line_failed":
        if isinstance(d.get("line"), str):
            a.failed_lines.append(d["line"])
        if a.joined_at is None and len(a.failed_lines) >= lines.get(a.agency, 1):
            a.state = LineState.FAILED
    elif t == "agency_joined":
        a.joined_at, a.line = a.joined_at or e.at, d.get("line")
        if a.state in (LineState.RINGING, LineState.FAILED):
            a.state = LineState.ANSWERED
    elif t == "agency_accepted":
        a.accepted_at = a.accepted_at or e.at
        if a.state is not LineState.MOVING:
            a.state = LineState.ACCEPTED
    elif t == "team_moving":
        a.moving_at, a.state = a.moving_at or e.at, LineState.MOVING
    elif t == "overdue":
        a.overdue = True
