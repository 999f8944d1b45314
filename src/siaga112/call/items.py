"""What a call's inbox holds besides ARI events: typed items, one class each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from siaga112.ari.models import AriEvent
from siaga112.model import CallState


@dataclass(frozen=True)
class Offer:
    """The queue picked this operator for the caller: ring them."""

    operator: str


@dataclass(frozen=True)
class Timer:
    name: str


@dataclass(frozen=True)
class StopNow:
    """The daemon stops gracefully: a call not connected goes to the fallback queue."""


@dataclass(frozen=True)
class OverflowNow:
    """Nobody can answer (or the caller waited too long): go to the overflow target."""

    reason: str


@dataclass(frozen=True)
class NodeLost:
    """The cluster node the call lives on is dead (stasis.py): the call went with it."""

    node: str


@dataclass(frozen=True)
class OperatorAway:
    """The resync found the operator's leg gone (they hung up while we were disconnected)."""


class CommandKind(StrEnum):
    AGENCY = "agency"  # arg: the agency's code
    CATEGORY = "category"  # arg: "01".."12"
    DISPOSITION = "disposition"  # arg: a Disposition value
    RECALL = "recall"  # instant recall on the operator's leg (call/recall.py)
    RECALL_RETURN = "recall_return"  # back to the call from a recall


class CommandResult(StrEnum):
    """What a command did. A command that could not be carried out raises one of
    call/errors.py's CommandError classes instead."""

    OK = "ok"
    DIALLING = "dialling"  # the agency's duty line is being dialled
    ALREADY_ON_CALL = "already on the call"  # the agency is on the call, or being dialled
    RECALLING = "recalling"  # the operator hears the call's last seconds again


@dataclass(frozen=True)
class Command:
    """From the HTTP API: bring an agency, set a category, mark the call. The outcome goes back
    through `done`: a CommandResult, or a CommandError set as its exception."""

    kind: CommandKind
    arg: str = ""
    by: str = "api"
    done: asyncio.Future[CommandResult] | None = None


@dataclass
class Resume:
    """What the resync found in Asterisk for a call that was live when we (re)connected."""

    state: CallState
    since: datetime | None = None
    priority: bool = False
    flags: list[str] = field(default_factory=list)
    operator: str | None = None
    operator_channel: str | None = None
    agency_channels: dict[str, str] = field(default_factory=dict)  # channel id -> dispatch id
    agency_dialling: dict[str, str] = field(default_factory=dict)  # duty lines still ringing
    requeue_reason: str | None = None  # "operator_gone": connected before, nobody with them now
    bridge: str | None = None  # the call's bridge the citizen is in (a call bridge of theirs)


Item = AriEvent | Offer | Timer | Command | StopNow | OverflowNow | OperatorAway | NodeLost
