"""What every call needs, built once by the composition root (app.py) and passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from siaga112.agencies import Directory
from siaga112.ari.protocol import Ari
from siaga112.call.clock import Clock, LoopClock
from siaga112.call.cpu_wait import CpuWait
from siaga112.call.notes import AfterEnd
from siaga112.holding import HoldingBridge
from siaga112.model import Disposition
from siaga112.operators import OperatorDesk
from siaga112.queue import CallQueue
from siaga112.screening import Screening
from siaga112.settings import Settings
from siaga112.sinks import EventSink


class CallMetrics(Protocol):
    def call_answered(self, latency_seconds: float) -> None: ...
    def call_waited(self, seconds: float) -> None: ...
    def call_ended(self, outcome: Disposition) -> None: ...
    def desk_phone_lost(self, operator: str) -> None: ...


@dataclass(frozen=True)
class CallDeps:
    ari: Ari
    settings: Settings
    screening: Screening
    queue: CallQueue
    desk: OperatorDesk
    sink: EventSink
    directory: Directory
    holding: HoldingBridge
    metrics: CallMetrics | None = None
    clock: Clock = field(default_factory=LoopClock)
    cpu: CpuWait = field(default_factory=CpuWait)  # the loop thread's wait for a core
    # In a cluster: is the node this call (id) lives on taken as dead? (ari/cluster.py)
    node_lost: Callable[[str], bool] = field(default=lambda _call_id: False)
    after_end: AfterEnd = field(init=False)  # on the same clock as the calls' timers

    def __post_init__(self) -> None:
        object.__setattr__(self, "after_end", AfterEnd(self.clock))
