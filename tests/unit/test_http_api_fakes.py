"""Test doubles for the HTTP API tests (no tests here): a small stand-in for app.Daemon, with
what the HTTP API reads and calls. The repository and policy are whatever the test passes (the
real ones on the dev PostgreSQL, or a stub); the live parts (stasis, queue, desk) are fakes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.api.deps import LeadershipLike
from siaga112.api.live import LiveFeed
from siaga112.call.errors import CallNotLive, CommandError
from siaga112.call.items import CommandKind, CommandResult
from siaga112.metrics import Metrics
from siaga112.model import LineType, OperatorSnapshot, OperatorState, QueueEntry, QueueSnapshot
from siaga112.records.repository import Repository
from siaga112.records.schemas import DispatchRow
from siaga112.settings import ApiSettings, ApiToken, MqttSettings, Settings

TOKENS = {
    "supervisor": "sup-token-aaaaaaaaaaaaaaaa",
    "operator": "op-token-bbbbbbbbbbbbbbbbbbb",
    "admin": "admin-token-cccccccccccccccc",
    "agency": "agency-token-ddddddddddddddd",
}


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def make_settings(metrics_public: bool = False, mqtt: bool = True) -> Settings:
    tokens = [
        ApiToken(token=SecretStr(TOKENS["supervisor"]), role="supervisor", name="ani"),
        ApiToken(token=SecretStr(TOKENS["operator"]), role="operator", name="op1"),
        ApiToken(token=SecretStr(TOKENS["admin"]), role="admin", name="root"),
        ApiToken(token=SecretStr(TOKENS["agency"]), role="agency", name="damkar", agency="01"),
    ]
    api = ApiSettings(host="127.0.0.1", port=8112, tokens=tokens, metrics_public=metrics_public)
    settings = Settings(mqtt=MqttSettings(enabled=mqtt))
    settings.api = api
    return settings


@dataclass
class FakeStasis:
    """Live calls by id, as Stasis.command answers: CallNotLive for a call it lacks; for a live
    one, what `answers` says for the kind (default OK), a CommandError being raised.
    `commands` keeps the commands live calls were given."""

    sessions: dict[str, object] = field(default_factory=dict)
    answers: dict[CommandKind, CommandResult | CommandError] = field(default_factory=dict)
    commands: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def command(self, call_id: str, kind: CommandKind, arg: str,
                      by: str) -> CommandResult:
        if call_id not in self.sessions:
            raise CallNotLive(call_id)
        self.commands.append((call_id, kind.value, arg, by))
        answer = self.answers.get(kind, CommandResult.OK)
        if isinstance(answer, CommandError):
            raise answer
        return answer


@dataclass
class FakeQueue:
    entries: list[QueueEntry] = field(default_factory=list)

    def snapshot(self) -> QueueSnapshot:
        return QueueSnapshot(length=len(self.entries), entries=self.entries)


@dataclass
class FakeDesk:
    ops: dict[str, OperatorSnapshot] = field(default_factory=dict)
    persisted: list[str] = field(default_factory=list)

    def __contains__(self, name: str) -> bool:
        return name in self.ops

    def snapshot(self) -> list[OperatorSnapshot]:
        return list(self.ops.values())

    def choose(self, name: str, state: OperatorState, reason: str | None, persist: bool) -> None:
        self.ops[name] = self.ops[name].model_copy(update={"state": state, "reason": reason})
        if persist:
            self.persisted.append(name)


@dataclass
class FakeEvents:
    connected: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakeWriter:
    backlog: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class FakeNotifier:
    connected: bool = True


@dataclass
class FakeOverflow:
    active: bool = False
    active_since: datetime | None = None


@dataclass
class FakeLeadership:
    """leadership.Leadership as the API reads it: this node, its role, who it saw leading."""

    node: str = "b"
    role: str = "standby"
    leader: str | None = "a"


@dataclass
class FakeDaemon:
    settings: Settings
    engine: AsyncEngine  # not read by the API (it reaches the database through `repository`)
    repository: Any
    policy: Any
    stasis: FakeStasis = field(default_factory=FakeStasis)
    queue: FakeQueue = field(default_factory=FakeQueue)
    desk: FakeDesk = field(default_factory=FakeDesk)
    events: FakeEvents = field(default_factory=FakeEvents)
    notifier: object = field(default_factory=FakeNotifier)
    metrics: Metrics = field(default_factory=lambda: Metrics(process=False))
    writer: FakeWriter = field(default_factory=FakeWriter)
    overflow: FakeOverflow = field(default_factory=FakeOverflow)
    moving: list[tuple[str, str, str, str]] = field(default_factory=list)
    live: LiveFeed = field(default_factory=LiveFeed)
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    role: str = "active"
    leadership: LeadershipLike | None = None  # None: HA off; FakeLeadership or another

    def team_moving(self, agency: str, call_id: str, dispatch_id: str, by: str) -> None:
        self.moving.append((agency, call_id, dispatch_id, by))

    def call_note(self, call_id: str, text: str, by: str) -> None:
        self.notes.append((call_id, text, by))


class KnownDispatches(Repository):
    """The real repository on whatever engine, but with dispatches known by heart:
    dispatch id -> (call id, agency)."""

    def __init__(self, engine: AsyncEngine, dispatches: dict[str, tuple[str, str]]) -> None:
        super().__init__(engine)
        self.dispatches = dispatches

    async def agency_dispatch(self, dispatch_id: str, agency: str) -> DispatchRow | None:
        call_id, owner = self.dispatches.get(dispatch_id, ("", ""))
        if owner != agency:
            return None
        return DispatchRow(dispatch_id=dispatch_id, call_id=call_id, agency=owner,
                           requested_at=datetime(2025, 1, 1, tzinfo=UTC))


def waiting_caller(call_id: str = "1700000000.1") -> QueueEntry:
    return QueueEntry(call_id=call_id, caller="+6281234567890", line_type=LineType.MOBILE,
                      since=datetime(2025, 1, 1, tzinfo=UTC), priority=False)


def desk_of(*names: str) -> FakeDesk:
    return FakeDesk({n: OperatorSnapshot(operator=n, state=OperatorState.AVAILABLE,
                                         reachable=True) for n in names})
