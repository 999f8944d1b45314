"""Small test doubles for unit tests of pure logic (integration tests use the real PBX)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from siaga112.ari.client import NotFound
from siaga112.ari.models import Application, Bridge, Channel, Endpoint, Playback, RtpStats
from siaga112.model import CallEvent, OperatorEvent
from siaga112.operators import Operator, OperatorDesk
from siaga112.queue import CallQueue


@dataclass
class FakeAri:
    """Records every ARI call; `fail` maps a method name to the exception it raises. It is an
    `siaga112.ari.protocol.Ari` (mypy checks it where the tests pass it for one)."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)  # channels get_channel finds
    members: dict[str, list[str]] = field(default_factory=dict)  # what get_bridge finds
    playing: set[str] = field(default_factory=set)  # playbacks get_playback finds
    rx: dict[str, int] = field(default_factory=dict)  # media packets from a leg (rtp_statistics)

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail[name]

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                      json: dict[str, Any] | None = None) -> Any:
        self._call("request", method, path)
        return None

    async def answer(self, channel_id: str) -> None:
        self._call("answer", channel_id)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self._call("hangup", channel_id)

    async def continue_in_dialplan(self, channel_id: str, context: str | None = None,
                                   extension: str = "s", priority: int = 1) -> None:
        self._call("continue_in_dialplan", channel_id, context)

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        self._call("set_var", channel_id, name, value)

    async def play(self, channel_id: str, media: str, playback_id: str | None = None) -> Playback:
        self._call("play", channel_id, media)
        return Playback(id=playback_id or "pb")

    async def stop_playback(self, playback_id: str) -> None:
        self._call("stop_playback", playback_id)

    async def get_playback(self, playback_id: str) -> Playback:
        self._call("get_playback", playback_id)
        if playback_id not in self.playing:
            raise NotFound("GET", f"/playbacks/{playback_id}", 404, "Playback not found")
        return Playback(id=playback_id)

    async def stop_moh(self, channel_id: str) -> None:
        self._call("stop_moh", channel_id)

    async def originate(self, endpoint: str, channel_id: str, app: str, app_args: str,
                        caller_id: str | None = None, ring_seconds: int = 30,
                        variables: dict[str, str] | None = None) -> Channel:
        self._call("originate", endpoint, channel_id)
        return Channel(id=channel_id)

    async def channels(self) -> list[Channel]:
        self._call("channels")
        return [Channel(id=c, state="Up") for c in sorted(self.alive)]

    async def get_bridge(self, bridge_id: str) -> Bridge:
        self._call("get_bridge", bridge_id)
        return Bridge(id=bridge_id, channels=self.members.get(bridge_id, []))

    async def bridges(self) -> list[Bridge]:
        self._call("bridges")
        return [Bridge(id=b, channels=chans) for b, chans in self.members.items()]

    async def bridge_play(self, bridge_id: str, media: str) -> Playback:
        self._call("bridge_play", bridge_id, media)
        return Playback(id=f"{bridge_id}-play")

    async def application(self, app: str) -> Application:
        self._call("application", app)
        return Application(name=app, channel_ids=sorted(self.alive))

    async def subscribe(self, app: str, event_source: str) -> None:
        self._call("subscribe", app, event_source)

    async def filter_events(self, app: str, disallowed: Sequence[str]) -> None:
        self._call("filter_events", app, ",".join(disallowed))

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> Bridge:
        self._call("create_bridge", bridge_id, kind)
        return Bridge(id=bridge_id, bridge_type=kind)

    async def destroy_bridge(self, bridge_id: str) -> None:
        self._call("destroy_bridge", bridge_id)

    async def add_to_bridge(self, bridge_id: str, channel_id: str | Sequence[str],
                            role: str | None = None) -> None:
        channels = channel_id if isinstance(channel_id, str) else ",".join(channel_id)
        self._call("add_to_bridge", bridge_id, channels)

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        self._call("remove_from_bridge", bridge_id, channel_id)

    async def get_global(self, variable: str) -> str:
        self._call("get_global", variable)
        return self.globals.get(variable, "")

    async def set_global(self, variable: str, value: str) -> None:
        self._call("set_global", variable, value)
        self.globals[variable] = value

    async def endpoints(self, technology: str = "PJSIP") -> list[Endpoint]:
        self._call("endpoints", technology)
        return []

    async def rtp_statistics(self, channel_id: str) -> RtpStats:
        self._call("rtp_statistics", channel_id)
        if channel_id not in self.rx:
            raise NotFound("GET", f"/channels/{channel_id}/rtp_statistics", 404,
                           "Channel not found")
        return RtpStats(rxcount=self.rx[channel_id])

    async def get_channel(self, channel_id: str) -> Channel:
        self._call("get_channel", channel_id)
        if channel_id in self.alive:
            return Channel(id=channel_id, state="Up")
        raise NotFound("GET", f"/channels/{channel_id}", 404, "Channel not found")


@dataclass
class FakeClock:
    """A hand-driven clock for a call's timers (uvicorn's MockLoop idea): nothing fires until
    the test advances time, and then exactly what is due fires, in order."""

    now: float = 0.0
    _due: list[tuple[float, int, Callable[[], None], list[bool]]] = field(default_factory=list)
    _n: int = 0

    class _Handle:
        def __init__(self, cancelled: list[bool]) -> None:
            self._cancelled = cancelled

        def cancel(self) -> None:
            self._cancelled[0] = True

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeClock._Handle:
        self._n += 1
        flag = [False]
        self._due.append((self.now + delay, self._n, callback, flag))
        self._due.sort(key=lambda d: (d[0], d[1]))
        return FakeClock._Handle(flag)

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while self._due and self._due[0][0] <= until:
            at, _, callback, cancelled = self._due.pop(0)
            self.now = at
            if not cancelled[0]:
                callback()
        self.now = until

    def pending(self) -> int:
        return sum(1 for d in self._due if not d[3][0])


@dataclass
class ListSink:
    calls: list[CallEvent] = field(default_factory=list)
    operators: list[OperatorEvent] = field(default_factory=list)

    def call_event(self, event: CallEvent) -> None:
        self.calls.append(event)

    def operator_event(self, event: OperatorEvent) -> None:
        self.operators.append(event)

    def types(self) -> list[str]:
        return [e.type.value for e in self.calls]


def operator(desk: OperatorDesk, name: str) -> Operator:
    """The desk's operator `name`, which the test knows exists."""
    op = desk.get(name)
    assert op is not None, f"no operator {name}"
    return op


def rematch(queue_ref: list[CallQueue]) -> None:
    """The desk's on_change for a test that builds desk and queue by hand: match again."""
    if queue_ref:
        queue_ref[0].match()
