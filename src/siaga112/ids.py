"""What an id is, once for the whole daemon: the ids that come in from outside (the HTTP API,
agencies' MQTT messages, channel variables read back from Asterisk) are checked here before
they reach a record, a log line or an MQTT topic.

An id is 1 to ``ID_MAX`` characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit:
what Asterisk's channel ids (``1764480000.123``), our leg ids (legs.py: ``<call>-op-op1-2``) and
dispatch ids (agency_bridge.py: ``<call>-01-1a2b3c4d``) are made of. So an id never holds a
topic level separator or wildcard (``/ + #``), a NUL that PostgreSQL refuses, a control
character or a 65 kB string. A call id is at most ``CALL_ID_MAX``, so that the ids built from it
(legs, dispatches) are ids too.

Use the pydantic types (`CallId`, `Id`, `AgencyCode`, `Note`) in models, and the functions
(`is_id`, `checked`, `channel_tags`) where a value is read by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

ID_MAX = 128
CALL_ID_MAX = 96  # + "-01-1a2b3c4d" or "-op-<name>-<n>" stays within ID_MAX
NOTE_MAX = 200
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
AGENCY_PATTERN = r"^[0-9]{2}$"
FLAGS_MAX = 16  # flags a call carries (model: blocked_bypass, silent_emergency, ...)
FLAG_MAX = 32
_ARRIVED_MAX = 40  # an ISO 8601 time with microseconds and zone is 32 characters

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_AGENCY = re.compile(r"[0-9]{2}")
_FLAG = re.compile(r"[a-z0-9_]{1,32}")


def is_id(value: object, max_length: int = ID_MAX) -> bool:
    """True for a str that is an id of at most max_length characters."""
    return (isinstance(value, str) and 0 < len(value) <= max_length
            and _ID.fullmatch(value) is not None)


def is_call_id(value: object) -> bool:
    return is_id(value, CALL_ID_MAX)


def is_agency_code(value: object) -> bool:
    return isinstance(value, str) and _AGENCY.fullmatch(value) is not None


def checked(value: object, max_length: int = ID_MAX) -> str | None:
    """value if it is an id, else None."""
    return value if is_id(value, max_length) else None  # type: ignore[return-value]


def problem(value: object, max_length: int = ID_MAX) -> str | None:
    """What is wrong with value as an id (for a 422 or a log line), None when nothing is."""
    if not isinstance(value, str):
        return "must be a string"
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"must be at most {max_length} characters, got {len(value)}"
    if _ID.fullmatch(value) is None:
        return "may hold only A-Z a-z 0-9 . _ - and must start with a letter or digit"
    return None


def is_note(value: object, max_length: int = NOTE_MAX) -> bool:
    """Free text a person typed (a reason): printable, no control characters, bounded."""
    return isinstance(value, str) and len(value) <= max_length and value.isprintable()


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must hold only printable characters (no control characters)")
    return value


# -- pydantic types: a request or message field of one of these is checked on parsing --------

Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]
CallId = Annotated[str, StringConstraints(min_length=1, max_length=CALL_ID_MAX,
                                          pattern=ID_PATTERN)]
AgencyCode = Annotated[str, StringConstraints(pattern=AGENCY_PATTERN)]
Note = Annotated[str, StringConstraints(max_length=NOTE_MAX), AfterValidator(_printable)]


# -- channel variables read back from Asterisk (stasis.py resync, session.py) ---------------


@dataclass(frozen=True)
class ChannelTags:
    """A citizen channel's SIAGA112_* variables, checked. What fails its check is left out
    (None, False, empty) and named in `refused`, so the call goes on without it."""

    arrived: datetime | None = None  # SIAGA112_ARRIVED
    priority: bool = False  # SIAGA112_PRIORITY == "1"
    flags: list[str] = field(default_factory=list)  # SIAGA112_FLAGS, comma separated
    line: str = ""  # SIAGA112_LINE (session.py matches it against model.LineType)
    trunk: str = ""  # SIAGA112_TRUNK
    geo: str = ""  # SIAGA112_GEO: the format of the carrier's location (GML, civicAddress, URI)
    refused: tuple[str, ...] = ()  # names of the variables left out


def channel_tags(variables: Mapping[str, object] | None) -> ChannelTags:
    """The SIAGA112_* tags of a citizen channel, each checked; never raises."""
    v = variables or {}
    refused: list[str] = []

    def text(name: str) -> str:
        value = v.get(name, "")
        if not isinstance(value, str):
            refused.append(name)
            return ""
        return value

    arrived: datetime | None = None
    raw = text("SIAGA112_ARRIVED")
    if raw:
        try:
            if len(raw) > _ARRIVED_MAX:
                raise ValueError(raw)
            arrived = datetime.fromisoformat(raw)
            if arrived.tzinfo is None:  # the session writes an aware time; this was not it
                raise ValueError(raw)
        except ValueError:
            arrived = None
            refused.append("SIAGA112_ARRIVED")
    raw = text("SIAGA112_PRIORITY")
    if raw not in ("", "0", "1"):
        refused.append("SIAGA112_PRIORITY")
    priority = raw == "1"
    flags: list[str] = []
    raw = text("SIAGA112_FLAGS")
    if raw:
        given = [f for f in raw.split(",", FLAGS_MAX) if f]
        flags = [f for f in given[:FLAGS_MAX] if _FLAG.fullmatch(f)]
        if len(flags) != len(given):
            refused.append("SIAGA112_FLAGS")
    line = text("SIAGA112_LINE")
    if line and not is_id(line, FLAG_MAX):
        refused.append("SIAGA112_LINE")
        line = ""
    trunk = text("SIAGA112_TRUNK")
    if trunk and not is_id(trunk, FLAG_MAX * 2):
        refused.append("SIAGA112_TRUNK")
        trunk = ""
    geo = text("SIAGA112_GEO")
    if geo and not is_id(geo, FLAG_MAX):
        refused.append("SIAGA112_GEO")
        geo = ""
    return ChannelTags(arrived=arrived, priority=priority, flags=flags, line=line, trunk=trunk,
                       geo=geo, refused=tuple(refused))


def dispatch_tag(value: object) -> str:
    """SIAGA112_DISPATCH of an agency leg: the dispatch id, or "" when it is not one (the
    session then names the dispatch after its call and agency, as for a missing tag)."""
    return value if is_id(value) else ""  # type: ignore[return-value]
