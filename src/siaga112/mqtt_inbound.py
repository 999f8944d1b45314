"""What agencies tell us over MQTT: their team is moving. Every message is checked here (topic,
agency code, size, JSON, ids) by a pure function that never raises, so nothing unchecked reaches
a record or a topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from siaga112 import ids
from siaga112.ids import CallId, Id
from siaga112.mqtt_buffer import Topics

MAX_INBOUND = 4096  # bytes of an agency's message; a `moving` is under 300
LOGGED = 200  # characters of a refused value or payload put in a log line


class TeamMovingPayload(BaseModel):
    """What an agency system publishes on {prefix}/agencies/{code}/moving: ids checked
    (ids.py), so nothing unchecked reaches a record or a topic."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    call_id: CallId
    dispatch_id: Id


@dataclass(frozen=True)
class TeamMoving:
    """An agency's `moving` message that passed every check."""

    agency: str  # from the topic: two digits
    payload: TeamMovingPayload


@dataclass(frozen=True)
class Refused:
    """An inbound message refused, and why: `event` names the log line."""

    event: str  # mqtt_unexpected_topic | mqtt_team_moving_refused | mqtt_team_moving_malformed
    reason: str
    agency: str | None = None
    shown: str = ""  # the start of the payload, as text
    errors: list[Any] | None = None  # pydantic's, without the input


def read_team_moving(topics: Topics, topic: str, payload: object) -> TeamMoving | Refused:
    """Check one message on {prefix}/agencies/{code}/moving: the topic, the agency code, the
    size, the JSON and the ids in it (ids.py). Pure; never raises."""
    agency = topics.agency_of_moving(topic)
    if agency is None:
        return Refused("mqtt_unexpected_topic", "not an agency's moving topic")
    if not ids.is_agency_code(agency):
        return Refused("mqtt_team_moving_refused", "the topic names no agency code (two digits)")
    raw = payload if isinstance(payload, bytes | str) else str(payload)
    if len(raw) > MAX_INBOUND:
        return Refused("mqtt_team_moving_refused",
                       f"payload of {len(raw)} bytes, over {MAX_INBOUND}", agency)
    try:
        moving = TeamMovingPayload.model_validate_json(raw)
    except ValidationError as exc:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        return Refused("mqtt_team_moving_malformed", "not a moving message with checked ids",
                       agency, text[:LOGGED], list(errors))
    return TeamMoving(agency, moving)
