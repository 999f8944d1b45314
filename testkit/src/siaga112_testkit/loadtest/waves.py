"""`siaga112-testkit waves`: the daemon's CPU on the path from arrival to an operator, measured
by itself.

The performance goal (issue 13) counts the CPU "on the path from arrival to an operator"; the
bench's figure is the whole call (the end too: the hang-ups, the last records, the operator
free again). Here the two are taken apart in time. A wave is `size` callers at `rate` calls/s
while every desk phone is free; the desk phones answer after `ring` s and never hang up first;
each caller hangs up `hold` s after the answer. The daemon's CPU (the run time of all its
threads, /proc/PID/task/*/schedstat, in ns) is read before a wave, `settle` s after its last
caller should be with an operator (their records flushed, MQTT's window past), and `settle` s
after its last caller hung up. The idle daemon's rate, read before the first wave, is taken off
both windows. The records say whether every caller of a wave did reach an operator; a wave
whose callers did not is no measure of this path, and the report says so.

Waves are colder than a steady load (the daemon is quiet between them), so a wave's call
costs more than the bench's steady 10 calls/s: compare waves with waves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from siaga112.callerid import normalise
from siaga112.settings import Settings
from siaga112_testkit import cpuprof
from siaga112_testkit.loadtest.daemon import (
    DaemonApi,
    DaemonError,
    daemon_running,
    restore_operators,
    set_operators,
)
from siaga112_testkit.loadtest.floor import BRIDGED, floor_running
from siaga112_testkit.loadtest.phones import (
    CallerGroup,
    DeskPlan,
    LoadPcaps,
    desk_phones,
    national_number,
    start_callers,
)
from siaga112_testkit.loadtest.records import read_calls
from siaga112_testkit.loadtest.runner import RunContext, drain, wait_at_rest
from siaga112_testkit.topology import MOBILE_TRUNK

DESK_PHONES = 8  # the topology's op1..op8: a wave is never larger (nobody may queue)
# The daemon the waves start: no wrap-up, so that a wave's desk phones are free for the next.
OVERRIDES = {"SIAGA112_QUEUE__WRAPUP": "0"}


@dataclass(frozen=True)
class WavePlan:
    waves: int = 12
    size: int = 8  # callers a wave, each to a free desk phone
    rate: float = 10.0  # calls/s within a wave
    hold: float = 3.0  # s each caller stays after the answer
    ring: float = 0.3  # s a desk phone rings before it answers
    settle: float = 1.2  # s after the last caller is with an operator, and after the last BYE
    gap: float = 1.0  # s between a wave's end and the next wave
    idle: float = 5.0  # s over which the idle daemon's rate is read, before the first wave

    def __post_init__(self) -> None:
        if self.waves < 1:
            raise ValueError(f"waves must be at least 1, got {self.waves}")
        if not 1 <= self.size <= DESK_PHONES:
            raise ValueError(f"size must be 1..{DESK_PHONES} (a free desk phone for each "
                             f"caller), got {self.size}")
        if self.rate <= 0:
            raise ValueError(f"rate must be above 0 calls/s, got {self.rate}")
        if self.ring < 0 or self.gap < 0 or self.settle <= 0 or self.idle <= 0:
            raise ValueError("ring and gap must be 0 s or more, settle and idle above 0 s")
        # The first window must close before the first caller hangs up.
        if self.hold <= self.ring + self.settle + (self.size - 1) / self.rate:
            raise ValueError(
                f"hold ({self.hold:g} s) must be longer than the wave's arrivals, the ring and "
                f"the settle ({(self.size - 1) / self.rate + self.ring + self.settle:g} s): the "
                f"path to an operator is read before anybody hangs up")

    @property
    def to_operator_window(self) -> float:
        """From a wave's start until its last caller is with an operator, and settled."""
        return (self.size - 1) / self.rate + self.ring + self.settle


class Wave(BaseModel):
    to_operator_ms: float  # the daemon's CPU a call, arrival to an operator
    rest_ms: float  # the rest of the call: talk and the end
    callers: int
    reached: int  # callers the records show with an operator


class WavesReport(BaseModel):
    waves: list[Wave]
    size: int
    rate: float
    hold: float
    ring: float
    idle_ms_per_s: float
    daemon_pid: int
    started_at: str
    notes: list[str] = []
    # Folded stacks of the daemon's main thread over the waves' to-an-operator windows only
    # (--profile: the daemon under the CPU-time sampler); empty when not sampled.
    profile: dict[str, int] = {}

    @property
    def measured(self) -> list[Wave]:
        """The waves whose callers all reached an operator: the others measured another path."""
        return [w for w in self.waves if w.reached == w.callers]

    @property
    def clean(self) -> bool:
        return bool(self.waves) and len(self.measured) == len(self.waves)


def thread_cpu_ns(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The run time of all of a process's threads (schedstat, ns), None when it is gone. A
    thread that ends between the listing and its read is left out; a dead process (a zombie)
    is gone. (Not runner.cpu_seconds:
    /proc/PID/stat counts in 250 Hz ticks, 4 ms, about a call's CPU; a wave's window holds
    eight calls.)"""
    total, seen = 0, False
    try:
        # A daemon killed while we wait on it is a zombie until reaped: its threads' last
        # figures still read, and would be taken for a daemon doing nothing.
        stat = (proc / str(pid) / "stat").read_text()
        if stat[stat.rindex(")") + 2:][:1] in ("Z", "X"):
            return None
        tasks = list((proc / str(pid) / "task").iterdir())
    except (OSError, ValueError):
        return None
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total if seen else None


def per_call_ms(cpu_ns: int, seconds: float, idle_ms_per_s: float, calls: int) -> float:
    """A window's CPU a call, less what the idle daemon spends in as long."""
    return round((cpu_ns / 1e6 - idle_ms_per_s * seconds) / calls, 3)


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return (f"mean {statistics.fmean(values):.2f}, median {statistics.median(values):.2f} "
            f"({min(values):.2f}-{max(values):.2f})")


def render(report: WavesReport,
           title: str = "== waves: the path from arrival to an operator ==",
           who: str = "daemon") -> str:
    measured = report.measured
    lines = [
        title,
        f"  {len(report.waves)} waves of {report.size} callers at {report.rate:g}/s, desk "
        f"phones answer after {report.ring:g} s, callers hang up {report.hold:g} s after the "
        f"answer; the idle {who} {report.idle_ms_per_s:.2f} ms of CPU a second (taken off)",
    ]
    for n, w in enumerate(report.waves):
        lines.append(f"  wave {n:2d}: to an operator {w.to_operator_ms:6.2f} ms a call, the "
                     f"rest {w.rest_ms:6.2f}; {w.reached}/{w.callers} reached an operator")
    to_op = [w.to_operator_ms for w in measured]
    rest = [w.rest_ms for w in measured]
    whole = [w.to_operator_ms + w.rest_ms for w in measured]
    lines += [
        f"  {who} CPU ms a call, arrival to an operator: {_spread(to_op)}",
        f"  the rest of the call (talk and the end): {_spread(rest)}",
        f"  the whole call: {_spread(whole)} (waves run colder than a steady load)",
    ]
    if len(measured) < len(report.waves):
        lines.append(f"  NOT CLEAN: {len(report.waves) - len(measured)} waves had callers who "
                     f"did not reach an operator (left out of the figures)")
    if report.profile and to_op:
        lines.append("  arrival to an operator by part: "
                     + cpuprof.parts_line(report.profile, statistics.fmean(to_op)))
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


async def run_waves(plan: WavePlan, ctx: RunContext, daemon_pid: int,
                    folded: Path | None = None) -> WavesReport:
    """The waves against the daemon whose pid is given (its API in ctx.api), on the topology's
    desk phones op1..op`size`, which must be logged in and free. folded: the daemon runs under
    the CPU-time sampler writing there (cpuprof.wrapped), and each wave's window from arrival
    to an operator is sampled; the report holds their sum."""
    if ctx.api is None:
        raise ValueError("the waves need the daemon's API (ctx.api)")
    busy = await not_free(ctx.api, [f"op{n}" for n in range(1, plan.size + 1)])
    if busy:
        raise RuntimeError(f"the waves need op1..op{plan.size} free, and these are not: "
                           f"{', '.join(busy)}")
    run = await _measure(plan, ctx, daemon_pid, folded)
    e164 = {number: normalise(number).e164 or number for number in run.numbers}
    records = await read_calls(ctx.settings.database.url, sorted(e164.values()), run.since,
                               expect=plan.size * plan.waves)
    reached: dict[str | None, int] = {}
    for call in records.calls:
        if call.connected and call.disposition == "genuine":
            reached[call.caller] = reached.get(call.caller, 0) + 1
    return run.report(plan, [reached.get(e164[number], 0) for number in run.numbers])


@dataclass
class _Measured:
    """What the waves measured of an app, before anybody says who reached an operator."""

    pid: int
    since: datetime
    idle_ms_per_s: float
    numbers: list[str]  # each wave's caller number
    windows: list[tuple[int, float, int, float]]  # CPU ns and s: to an operator, the rest
    notes: list[str]
    profile: dict[str, int]

    def report(self, plan: WavePlan, reached: Sequence[int]) -> WavesReport:
        waves = [
            Wave(to_operator_ms=per_call_ms(a, ta, self.idle_ms_per_s, plan.size),
                 rest_ms=per_call_ms(b, tb, self.idle_ms_per_s, plan.size),
                 callers=plan.size, reached=n)
            for (a, ta, b, tb), n in zip(self.windows, reached, strict=True)
        ]
        return WavesReport(waves=waves, size=plan.size, rate=plan.rate, hold=plan.hold,
                           ring=plan.ring, idle_ms_per_s=round(self.idle_ms_per_s, 3),
                           daemon_pid=self.pid, started_at=self.since.isoformat(),
                           notes=self.notes, profile=self.profile)


async def _measure(plan: WavePlan, ctx: RunContext, pid: int,
                   folded: Path | None) -> _Measured:
    """The waves against the app whose pid is given, its CPU read around each wave."""
    pcaps = LoadPcaps(ctx.out_dir / "pcaps")
    notes = list(ctx.extra_notes)
    unrest = await wait_at_rest(ctx)
    if unrest is not None:
        notes.append(f"the PBX was not at rest before the waves ({unrest})")
    since = datetime.now(UTC)
    desk = DeskPlan(operators=plan.size, ring=plan.ring, talk=plan.hold + 60.0)
    numbers: list[str] = []
    windows: list[tuple[int, float, int, float]] = []
    profile: collections.Counter[str] = collections.Counter()
    async with desk_phones(desk, ctx.out_dir / "desk", pcaps, ctx.remote):
        await asyncio.sleep(1.0)  # the desk phones' start-up is not the daemon's idle
        idle_ms_per_s = await _idle_rate(pid, plan.idle)
        for n in range(plan.waves):
            number = national_number("0811", 8)
            numbers.append(number)
            group = CallerGroup(f"wave{n}", MOBILE_TRUNK, number, rate=plan.rate,
                                calls=plan.size, hold=plan.hold)
            async with contextlib.AsyncExitStack() as sampled:
                window = (await sampled.enter_async_context(cpuprof.sampling(pid, folded))
                          if folded is not None else None)
                a0, t0 = _cpu(pid), time.monotonic()
                [caller] = await start_callers([group], ctx.out_dir / "callers", pcaps,
                                               ctx.remote,
                                               audio_seconds=max(10, int(plan.hold) + 2))
                try:
                    await asyncio.sleep(max(0.0, t0 + plan.to_operator_window
                                            - time.monotonic()))
                    a1, t1 = _cpu(pid), time.monotonic()
                except BaseException:
                    await caller.run.stop(grace=1.0)
                    raise
            if window is not None:
                profile.update(window.folded)
                if window.problem:
                    notes.append(f"wave {n}: no profile: {window.problem}")
            try:
                await caller.run.wait(plan.hold + 30.0)
            except BaseException:
                # Stopped, or the daemon gone: the wave's callers go too (they run in a
                # session of their own, so a terminal's signal does not reach them).
                await caller.run.stop(grace=1.0)
                raise
            await asyncio.sleep(plan.settle)
            a2, t2 = _cpu(pid), time.monotonic()
            windows.append((a1 - a0, t1 - t0, a2 - a1, t2 - t1))
            ctx.say(f"  wave {n}: to an operator "
                    f"{per_call_ms(a1 - a0, t1 - t0, idle_ms_per_s, plan.size):.2f} ms a call, "
                    f"the rest {per_call_ms(a2 - a1, t2 - t1, idle_ms_per_s, plan.size):.2f}")
            await asyncio.sleep(plan.gap)
        left = await drain(ctx.settings, ctx.drain_seconds)
    if left > 0:
        notes.append(f"{left} channels were still up after the waves (hung up)")
    return _Measured(pid, since, idle_ms_per_s, numbers, windows, notes, dict(profile))


def _cpu(pid: int) -> int:
    ns = thread_cpu_ns(pid)
    if ns is None:
        raise RuntimeError(f"the daemon (pid {pid}) is gone: its CPU cannot be read")
    return ns


async def _idle_rate(pid: int, seconds: float) -> float:
    before, t0 = _cpu(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (_cpu(pid) - before) / 1e6 / (time.monotonic() - t0)


async def not_free(api: DaemonApi, names: Sequence[str]) -> list[str]:
    """The desk phones among `names` that the daemon does not show available (busy with a call
    left from before, paused, logged out): a wave needs each of its desk phones free."""
    states = {str(op["operator"]): str(op["state"]) for op in await api.operators()}
    return [n for n in names if states.get(n) != "available"]


async def waves_on_own_daemon(settings: Settings, plan: WavePlan, ctx: RunContext,
                              profile: bool = False) -> WavesReport:
    """The waves on a daemon started for them (OVERRIDES), with op1..op`size` logged in and
    the operators' choices restored after; what `siaga112-testkit waves` and the bench run.
    profile: the daemon under the CPU-time sampler, its windows to an operator sampled.
    DaemonError when a daemon already answers the API: its CPU is not ours to read by pid."""
    async with daemon_running(settings, OVERRIDES, ctx.say, sampled=profile) as daemon:
        if daemon.pid is None:
            raise DaemonError("a daemon is already running (`make up`); the waves measure one "
                              "they start, by its pid: run `make down` first")
        before = await set_operators(daemon.api, list(settings.queue.operators), plan.size)
        try:
            ctx.api, ctx.daemon_pid, ctx.daemon_log = daemon.api, daemon.pid, daemon.logfile
            ctx.extra_notes = [*ctx.extra_notes, f"daemon settings: {daemon.settings_note}"]
            return await run_waves(plan, ctx, daemon.pid, daemon.folded)
        finally:
            await restore_operators(daemon.api, before)


async def waves_on_the_floor(settings: Settings, plan: WavePlan, ctx: RunContext,
                             profile: bool = False) -> WavesReport:
    """The same waves on the ARI floor (floor.py: the daemon's conversation with Asterisk and
    nothing else), ringing op1..op`size`: what of the path's CPU any application taking these
    calls through ARI spends. The floor keeps no records: it counts the calls it bridged, and
    the waves are clean when it bridged every caller (it cannot tell which wave one was in)."""
    async with floor_running(settings, plan.size, ctx.say, sampled=profile) as floor:
        ctx.extra_notes = [*ctx.extra_notes, "the ARI floor, not the daemon"]
        run = await _measure(plan, ctx, floor.pid, floor.folded)
    bridged = floor.counts.get(BRIDGED, 0)
    callers = plan.waves * plan.size
    if bridged != callers:
        run.notes.append(f"the floor bridged {bridged} of {callers} callers to a desk phone")
    return run.report(plan, [plan.size if bridged == callers else 0] * plan.waves)
