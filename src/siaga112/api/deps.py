"""What the API needs from the daemon (app.Daemon; a fake in tests), as Protocols: the live
calls, queue and desk, the records (repository and block policy), the parts /ready reads, and
whether this daemon leads (HA, docs/cluster.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from siaga112.api.live import LiveFeed
from siaga112.call.items import CommandKind, CommandResult
from siaga112.model import BlockEntry, OperatorSnapshot, OperatorState, QueueSnapshot
from siaga112.records.console import CallerHistory, WallAlerts
from siaga112.records.schemas import (
    BlockRecord,
    CallDetail,
    CallRecord,
    DispatchRow,
    Kpis,
    Referral,
)
from siaga112.settings import Settings


class StasisLike(Protocol):
    @property
    def sessions(self) -> Mapping[str, object]: ...
    async def command(self, call_id: str, kind: CommandKind, arg: str,
                      by: str) -> CommandResult: ...


class QueueLike(Protocol):
    def snapshot(self) -> QueueSnapshot: ...


class DeskLike(Protocol):
    def __contains__(self, name: str) -> bool: ...
    def snapshot(self) -> list[OperatorSnapshot]: ...
    def choose(self, name: str, state: OperatorState, reason: str | None,
               persist: bool) -> None: ...


class RepositoryLike(Protocol):
    async def ping(self, within: float) -> bool: ...
    async def list_calls(self, since: datetime | None = None, until: datetime | None = None,
                         caller: str | None = None, disposition: str | None = None,
                         operator: str | None = None, limit: int = 100,
                         offset: int = 0) -> list[CallRecord]: ...
    async def get_call(self, call_id: str) -> CallDetail | None: ...
    async def agency_dispatch(self, dispatch_id: str, agency: str) -> DispatchRow | None: ...
    async def mark_call(self, call_id: str, by: str, disposition: str | None = None,
                        category: str | None = None) -> CallRecord: ...
    async def list_blocks(self, include_expired: bool = False) -> list[BlockRecord]: ...
    async def referrals(self, only_new: bool = False) -> list[Referral]: ...
    async def kpis(self, since: datetime, until: datetime) -> Kpis: ...
    async def caller_history(self, number: str, window_hours: float,
                             exclude_call_id: str | None = None) -> CallerHistory: ...
    async def wall_alerts(self, dispatch_deadline: datetime, complaint_deadline: datetime,
                          since: datetime) -> WallAlerts: ...


class PolicyLike(Protocol):
    async def block(self, number: str, hours: float | None, reason: str,
                    by: str) -> BlockEntry: ...
    async def unblock(self, number: str, reason: str, by: str) -> bool: ...


class EventsLike(Protocol):
    @property
    def connected(self) -> asyncio.Event: ...


class MetricsLike(Protocol):
    def render(self) -> bytes: ...


class WriterLike(Protocol):
    @property
    def backlog(self) -> int: ...
    @property
    def problems(self) -> list[str]: ...


class OverflowLike(Protocol):
    @property
    def active(self) -> bool: ...
    @property
    def active_since(self) -> datetime | None: ...


class LeadershipLike(Protocol):
    """leadership.Leadership, read only. Its `role` turns "standby" the moment the daemon
    learns that another leads, before the daemon has stopped (Daemon.role says "active" until
    then); `leader` is the node this daemon last saw leading (None: it does not know)."""

    @property
    def node(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def leader(self) -> str | None: ...


class DaemonLike(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def stasis(self) -> StasisLike: ...
    @property
    def queue(self) -> QueueLike: ...
    @property
    def desk(self) -> DeskLike: ...
    @property
    def repository(self) -> RepositoryLike: ...
    @property
    def policy(self) -> PolicyLike: ...
    @property
    def events(self) -> EventsLike: ...
    @property
    def notifier(self) -> object: ...  # MqttNotifier (.connected) or NullNotifier
    @property
    def metrics(self) -> MetricsLike: ...
    @property
    def writer(self) -> WriterLike: ...
    @property
    def overflow(self) -> OverflowLike: ...
    @property
    def role(self) -> str: ...  # "active" or "standby" (leadership.Role)
    @property
    def leadership(self) -> LeadershipLike | None: ...  # None: HA off, the only daemon
    @property
    def live(self) -> LiveFeed: ...  # the web console's live events
    def team_moving(self, agency: str, call_id: str, dispatch_id: str, by: str) -> None: ...
    def call_note(self, call_id: str, text: str, by: str) -> None: ...
