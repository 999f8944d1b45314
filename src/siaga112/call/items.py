"""What a call's inbox holds besides ARI events: typed items, one class each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

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
class OperatorAway:
    """The resync found the operator's leg gone (they hung up while we were disconnected)."""


@dataclass(frozen=True)
class Command:
    """From the HTTP API or the CLI: bring an agency, set a category, mark the call."""

    kind: str
    arg: str = ""
    by: str = "api"
    done: asyncio.Future[str] | None = None


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
    requeue_reason: str | None = None  # "operator_gone": connected before, nobody with them now


Item = AriEvent | Offer | Timer | Command | StopNow | OverflowNow | OperatorAway
