"""One load run: desk phones up, citizens calling, progress while it runs, then the report from
what SIPp counted, what the daemon recorded in PostgreSQL (or app_queue in its queue_log) and
what its /metrics said. Every wait is bounded in time; all traffic stays on loopback.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import structlog

from siaga112.ari.client import AriClient, AriError
from siaga112.callerid import normalise
from siaga112.settings import Settings
from siaga112_testkit.loadtest import report as rp
from siaga112_testkit.loadtest.daemon import DaemonApi, DaemonError
from siaga112_testkit.loadtest.phones import (
    Caller,
    CallerGroup,
    DeskPlan,
    LoadPcaps,
    desk_phones,
    start_callers,
)
from siaga112_testkit.loadtest.records import QueueLog, read_calls
from siaga112_testkit.sipp import SippStats

log = structlog.get_logger(__name__)

Say = Callable[[str], None]
BENCH_QUEUE = "siaga112-bench"  # the dialplan path's queue (asterisk-conf/queues_testkit.conf)


class CallPath(StrEnum):
    DAEMON = "daemon"  # trunks -> Stasis -> the daemon
    DIALPLAN = "dialplan"  # trunk-bench -> Queue(siaga112-bench), app_queue as an ACD
    # trunks -> Stasis -> the ARI floor (loadtest/floor.py): the daemon's conversation with
    # Asterisk and nothing else, for the bench's measure of what that conversation costs
    FLOOR = "floor"


@dataclass(frozen=True)
class LoadPlan:
    name: str
    path: CallPath
    groups: Sequence[CallerGroup]
    desk: DeskPlan
    max_seconds: float  # the whole run's bound, SIPp stopped after it
    audio_seconds: int = 10  # length of the speech pcap the callers play
    # the records' dispositions that are right for this plan's callers (daemon path)
    expected: frozenset[str] = frozenset({"genuine", "abandoned"})

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError(f"{self.name}: a load plan needs at least one caller group")
        if self.max_seconds <= 0:
            raise ValueError(f"{self.name}: max_seconds must be above 0")


@dataclass
class RunContext:
    """What a run needs from outside: where the PBX is, where to write, whom to ask."""

    settings: Settings
    remote: str  # the test PBX's SIP address, host:port
    out_dir: Path
    say: Say
    api: DaemonApi | None = None  # the daemon under test (daemon path)
    queue_log: Path | None = None  # app_queue's queue_log (dialplan path, local PBX)
    daemon_log: Path | None = None  # the log of a daemon we started: its error lines count
    pbx_pid: int | None = None  # the local test PBX's pid: its CPU over the run is reported
    # The local PostgreSQL's and Mosquitto's pids ("PostgreSQL", "Mosquitto"): the daemon's
    # path also makes them work; their CPU (with the postmaster's backends) is reported too.
    service_pids: dict[str, int] = field(default_factory=dict)
    # A daemon we started: a run waits for it to be quiet too (its start-up work, such as the
    # recordings' retention sweep, is not the calls' cost).
    daemon_pid: int | None = None
    progress_every: float = 5.0
    drain_seconds: float = 30.0
    rest_seconds: float = 120.0  # bound of the wait for the PBX at rest before the load
    extra_notes: list[str] = field(default_factory=list)


async def _progress(callers: Sequence[Caller]) -> tuple[int, int, int, int]:
    created = successful = failed = current = 0
    for c in callers:
        s = SippStats.from_csv(c.run.run_dir / "stat.csv")
        if s is not None:
            created += s.created
            successful += s.successful
            failed += s.failed
            current += s.current
    return created, successful, failed, current


async def _wait_callers(plan: LoadPlan, ctx: RunContext, callers: Sequence[Caller],
                        start: float, queue: list[tuple[float, float]]) -> None:
    """Until every caller's SIPp ends or the plan's bound, sampling the daemon's queue each
    second and printing a progress line every ctx.progress_every seconds."""
    deadline = start + plan.max_seconds
    total = sum(g.calls for g in plan.groups)
    next_line = time.monotonic() + ctx.progress_every
    while any(c.run.running for c in callers):
        if time.monotonic() > deadline:
            ctx.say(f"  {plan.name}: time limit of {plan.max_seconds:.0f} s reached; "
                    f"stopping the callers")
            break
        if ctx.api is not None:
            try:
                queue.append((time.time(), float(await ctx.api.queue_length())))
            except DaemonError as exc:
                log.warning("queue_sample_failed", error=str(exc)[:200])
        if time.monotonic() >= next_line:
            created, ok, failed, current = await _progress(callers)
            q = f", queue {queue[-1][1]:.0f}" if queue else ""
            ctx.say(f"  {plan.name}: {time.monotonic() - start:5.0f} s  offered {created}/{total}"
                    f"  ended ok {ok}  failed {failed}  in progress {current}{q}")
            next_line += ctx.progress_every
        await asyncio.sleep(1.0)
    for c in callers:  # collects each result; stops (bounded) any still running
        await c.run.wait(max(1.0, deadline - time.monotonic()))


async def drain(settings: Settings, seconds: float) -> int:
    """Wait until the PBX has no channel left (bounded); the number left then. Channels still
    up after the wait (callers SIPp stopped without a BYE, after an overload) are hung up, so
    that the next run starts on an empty PBX."""
    deadline = time.monotonic() + seconds
    left = -1
    try:
        async with AriClient(settings.ari) as ari:
            while time.monotonic() < deadline:
                left = len(await ari.channels())
                if left == 0:
                    break
                await asyncio.sleep(0.5)
            if left > 0:
                log.warning("drain_hanging_up", channels=left)
                await _hang_up_left(ari, 60)
    except AriError as exc:
        log.warning("drain_check_failed", error=str(exc)[:200])
        await asyncio.to_thread(_hang_up_all_local)
    return left


# The PBX is at rest when it has no channel and (the local test PBX) spends less than this share
# of one core: idle with the desk phones registered it spends under 1%; right after a 300
# calls/s step it went on tearing calls down for tens of seconds with no channel listed.
REST_CPU = 0.10
REST_POLL = 1.0  # s between two looks


async def wait_at_rest(ctx: RunContext) -> str | None:
    """Wait (bounded by ctx.rest_seconds) until the PBX has no channel and, for the local
    PBX, is quiet, and so is a daemon we started; None when they came to rest, else what they
    were doing when the bound passed. A run that starts on a PBX still busy with the last one
    measures both; one that starts while the daemon finishes its start-up counts that work as
    the calls' (a retention sweep of 339,000 recordings took 2.6 s of CPU here)."""
    start = time.monotonic()
    said = hung_up = False
    async with AriClient(ctx.settings.ari) as ari:
        while True:
            channels: int | None = None
            try:
                channels = len(await ari.channels())
            except AriError as exc:
                log.warning("rest_check_failed", error=str(exc)[:200])
            busy, daemon = await asyncio.gather(_cpu_share(ctx.pbx_pid, REST_POLL),
                                                _cpu_share(ctx.daemon_pid, REST_POLL))
            if (channels == 0 and (busy is None or busy < REST_CPU)
                    and (daemon is None or daemon < REST_CPU)):
                if said:
                    ctx.say(f"  the PBX is at rest after {time.monotonic() - start:.0f} s")
                return None
            state = (f"{'?' if channels is None else channels} channels"
                     + ("" if busy is None else f", {100 * busy:.0f}% of a core")
                     + ("" if daemon is None else f"; the daemon {100 * daemon:.0f}%"))
            if time.monotonic() - start >= ctx.rest_seconds:
                if hung_up or not channels:
                    return state
                # Channels the last run left (an app_queue burst left 425 after 120 s, and
                # the flood after it measured a PBX still tearing them down): hung up, and
                # one more wait.
                hung_up = True
                asked = await _hang_up_left(ari, 30)
                ctx.say(f"  {state} after {ctx.rest_seconds:.0f} s: hung up the "
                        f"{asked} channels left by the last run; waiting again")
                start = time.monotonic()
                continue
            if not said:
                ctx.say(f"  waiting for the PBX to be at rest ({state})")
                said = True
            await asyncio.sleep(REST_POLL)


async def _hang_up_left(ari: AriClient, seconds: float) -> int:
    """Hang up every channel a run left; the PBX's CLI when ARI does not answer (an
    overloaded PBX); how many hang-ups were asked over ARI."""
    try:
        return await hang_up_all(ari, seconds=seconds)
    except AriError as exc:
        log.warning("rest_hang_up_failed", error=str(exc)[:200])
        await asyncio.to_thread(_hang_up_all_local)
        return 0


async def _cpu_share(pid: int | None, seconds: float) -> float | None:
    """The share of one core a process used over the next `seconds`; None when unknown."""
    if pid is None:
        return None
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    after = cpu_seconds(pid)
    return None if before is None or after is None else (after - before) / seconds


def restart_local_pbx() -> int | None:
    """Stop the local test PBX (by its pid when its CLI does not answer: a PBX wedged by an
    overload) and start it again; its new pid."""
    from siaga112_testkit.devstack import procs
    from siaga112_testkit.devstack.pbx import Pbx
    from siaga112_testkit.devstack.stack import repo_root

    pbx = Pbx(repo=repo_root(), state_dir=repo_root() / "var")
    pbx.down()
    pbx.up()
    return procs.read_pid(pbx.pidfile)


def local_pbx_pid() -> int | None:
    """The local test PBX's pid, when it runs (its CPU is reported beside the daemon's)."""
    from siaga112_testkit.devstack import procs
    from siaga112_testkit.devstack.pbx import Pbx
    from siaga112_testkit.devstack.stack import repo_root

    return procs.read_pid(Pbx(repo=repo_root(), state_dir=repo_root() / "var").pidfile)


def local_service_pids() -> dict[str, int]:
    """The local test stack's PostgreSQL (postmaster) and Mosquitto pids, those that run."""
    from siaga112_testkit.devstack import procs
    from siaga112_testkit.devstack.mosquitto import MosquittoServer
    from siaga112_testkit.devstack.postgres import postgres_status
    from siaga112_testkit.devstack.stack import repo_root

    state = repo_root() / "var"
    found = {"PostgreSQL": postgres_status(state).pid,
             "Mosquitto": procs.read_pid(MosquittoServer(state).pidfile)}
    return {name: pid for name, pid in found.items() if pid is not None}


def _hang_up_all_local() -> None:
    """An overloaded PBX may not answer ARI in time; the local test PBX's CLI still does."""
    from siaga112_testkit.devstack.pbx import Pbx
    from siaga112_testkit.devstack.stack import repo_root

    pbx = Pbx(repo=repo_root(), state_dir=repo_root() / "var")
    if not pbx.running():
        return
    try:
        pbx.cli("channel request hangup all", timeout=30)
        log.warning("drain_hung_up_by_cli")
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("drain_cli_failed", error=str(exc)[:200])


async def hang_up_all(ari: AriClient, *, seconds: float = 60.0, every: float = 1.0,
                      batch: int = 50) -> int:
    """Hang up every channel on the PBX, `batch` at a time, and again every `every` seconds
    while any is left (a daemon still running may ring an operator anew as its citizen goes),
    until none is listed or `seconds` pass; returns how many hang-ups were asked. A channel
    gone in between is no fault. The load test's drain and the tests' teardown use it."""
    asked = 0
    deadline = time.monotonic() + seconds
    while ids := [c.id for c in await ari.channels()]:
        for i in range(0, len(ids), batch):
            await asyncio.gather(*(ari.hangup(c) for c in ids[i:i + batch]),
                                 return_exceptions=True)
        asked += len(ids)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(every)
    return asked


async def _busy_operators(api: DaemonApi) -> dict[str, str]:
    """Operators the daemon holds ringing or on a call (asked once the PBX has no channel)."""
    try:
        ops = await api.operators()
    except DaemonError as exc:
        log.warning("operators_check_failed", error=str(exc)[:200])
        return {}
    return {str(o["operator"]): str(o["state"]) for o in ops
            if o.get("state") in ("ringing", "on_call")}


async def run_load(plan: LoadPlan, ctx: RunContext) -> rp.LoadReport:
    root = ctx.out_dir / plan.name
    pcaps = LoadPcaps(ctx.out_dir / "pcaps")
    unrest = await wait_at_rest(ctx)
    before = rp.Scrape.parse(await ctx.api.metrics()) if ctx.api else None
    since = datetime.now(UTC)
    log_from = _size(ctx.daemon_log)
    pbx_cpu_before = cpu_seconds(ctx.pbx_pid)
    services_before = {name: tree_cpu_seconds(pid) for name, pid in ctx.service_pids.items()}
    sipp_before = children_cpu_seconds()
    queue: list[tuple[float, float]] = []
    async with desk_phones(plan.desk, root, pcaps, ctx.remote) as desk:
        start_mono, start = time.monotonic(), time.time()
        ctx.say(f"  {plan.name}: " + "; ".join(
            f"{g.name} {g.calls} calls at {g.rate:g}/s, hold "
            f"{'until hung up' if g.hold is None else f'{g.hold:g} s'}" for g in plan.groups))
        callers = await start_callers(plan.groups, root, pcaps, ctx.remote, plan.audio_seconds)
        try:
            await _wait_callers(plan, ctx, callers, start_mono, queue)
        except BaseException:
            # Stopped (Ctrl-C, a signal, a fault): the callers' SIPp run in their own sessions,
            # so the terminal's signal does not reach them; without this they went on calling.
            await asyncio.gather(*(c.run.stop(grace=1.0) for c in callers),
                                 return_exceptions=True)
            raise
        end = time.time()
        left = await drain(ctx.settings, ctx.drain_seconds)
    notes = list(ctx.extra_notes)
    if unrest is not None:
        notes.append(f"the PBX was not at rest when the load began ({unrest} after "
                     f"{ctx.rest_seconds:.0f} s of waiting): the figures include its backlog")
    if left > 0:
        notes.append(f"{left} channels were still up {ctx.drain_seconds:.0f} s after the load")
    if ctx.api is not None and left == 0:
        stuck = await _busy_operators(ctx.api)
        if stuck:
            notes.append(f"with no call left on the PBX the daemon still holds operators busy: "
                         f"{stuck} (they take no more calls)")
    after = rp.Scrape.parse(await ctx.api.metrics()) if ctx.api else None
    report = _build(plan, callers, start, end, queue)
    report.notes = notes
    # Every SIPp of the run was ours and has been waited for by now (desk_phones closed).
    report.sipp_cpu_seconds = round(children_cpu_seconds() - sipp_before, 2)
    pbx_cpu_after = cpu_seconds(ctx.pbx_pid)
    if pbx_cpu_before is not None and pbx_cpu_after is not None:
        report.pbx_cpu_seconds = round(pbx_cpu_after - pbx_cpu_before, 2)
    for name, pid in ctx.service_pids.items():
        was, now = services_before.get(name), tree_cpu_seconds(pid)
        if was is not None and now is not None:
            report.service_cpu_seconds[name] = round(now - was, 2)
    if ctx.daemon_log is not None:
        report.daemon_error_lines, report.daemon_errors = error_lines(ctx.daemon_log, log_from)
    if before is not None and after is not None:
        report.metrics = rp.summarise_metrics(before, after,
                                              max((q for _, q in queue), default=0.0))
    operators = list(desk.operators)
    if plan.path is CallPath.DAEMON:
        callers_e164 = sorted({normalise(g.caller).e164 or g.caller for g in plan.groups})
        recs = await read_calls(ctx.settings.database.url, callers_e164, since,
                                expect=report.answered)
        report.records = len(recs.calls)
        report.answer_latency_ms = rp.Spread.of(recs.answer_latencies_ms)
        report.stasis_to_answer_ms = rp.Spread.of(recs.stasis_to_answer_ms)
        report.answered_by = recs.answered_by()
        report.take_in_cpu_share = recs.slowest_cpu_share()
        report.take_in_own_ms = rp.Spread.of(recs.own_latencies_ms)
        report.event_age_ms = rp.Spread.of(recs.event_ages_ms)
        report.wait_to_operator_s = rp.Spread.of(recs.waits_s)
        report.dispositions = recs.dispositions()
        report.wrong_dispositions = {k: v for k, v in report.dispositions.items()
                                     if k not in plan.expected}
        report.connected = sum(1 for c in recs.calls if c.connected)
        report.occupancy = rp.occupancy(recs.talk_by_operator(), operators, end - start)
        report.occupancy_source = "talk time in the records"
    elif plan.path is CallPath.DIALPLAN and ctx.queue_log is not None:
        qlog = QueueLog.read(ctx.queue_log, BENCH_QUEUE, start - 1)
        report.wait_to_operator_s = rp.Spread.of(qlog.waits_s)
        report.connected = len(qlog.waits_s)
        report.occupancy = rp.occupancy(qlog.talk_by_member, operators, end - start)
        report.occupancy_source = "talk time in app_queue's queue_log"
    return report


def _build(plan: LoadPlan, callers: Sequence[Caller], start: float, end: float,
           queue: list[tuple[float, float]]) -> rp.LoadReport:
    groups: list[rp.GroupReport] = []
    stat_rows: list[rp.StatRow] = []
    rtts: list[rp.Rtt] = []
    for c in callers:
        result = c.run.result
        assert result is not None  # waited for above
        stats = result.stats
        rtt_files = sorted(c.run.run_dir.glob("*_rtt.csv"))
        call_rtts = [r for f in rtt_files for r in rp.read_rtt(f, c.started_at)]
        rtts += call_rtts
        stat_rows += rp.read_stat_rows(c.run.run_dir / "stat.csv")
        groups.append(rp.GroupReport(
            name=c.group.name,
            offered=stats.created if stats else 0,
            # One per call however many times its log says so.
            answered=len({e.fields.get("call_id") for e in result.events("answered")}),
            successful=stats.successful if stats else 0,
            failed=stats.failed if stats else 0,
            failed_by_reason=rp.failed_by_reason(stats.raw) if stats else {},
            hung_up_by_pbx=len(result.events("bye_received")),
            timed_out=result.timed_out,
            exit=str(result.exit),
            run_dir=str(c.run.run_dir),
        ))
    offered = sum(g.offered for g in groups)
    answered = sum(g.answered for g in groups)
    window = max((g.offer_seconds for g in plan.groups), default=0.0)
    reasons: dict[str, int] = {}
    for g in groups:
        for k, v in g.failed_by_reason.items():
            reasons[k] = reasons.get(k, 0) + v
    plan_dict = {
        "groups": [asdict(g) for g in plan.groups],
        "desk": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(plan.desk).items()},
        "max_seconds": plan.max_seconds,
    }
    return rp.LoadReport(
        name=plan.name,
        path=plan.path.value,
        started_at=datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
        duration_s=round(end - start, 2),
        offer_window_s=round(window, 2),
        plan=plan_dict,
        groups=groups,
        offered=offered,
        answered=answered,
        failed=sum(g.failed for g in groups),
        failed_by_reason=reasons,
        offered_cps=round(rp.rate(offered, window), 2),
        answered_cps=round(rp.rate(answered, window), 2),
        sip_answer_ms=rp.Spread.of([r.ms for r in rtts]),
        timeline=rp.timeline(start, stat_rows, rtts, queue),
    )


ERROR_MARKS = ('"level": "error"', '"level": "critical"', "call_handler_failed", "Traceback")


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def error_lines(path: Path, offset: int, keep: int = 5) -> tuple[int, list[str]]:
    """Lines of the daemon's log written since offset that say error, critical,
    call_handler_failed or a traceback: their count and the first few (shortened)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return 0, []
    found = [line for line in text.splitlines() if any(m in line for m in ERROR_MARKS)]
    return len(found), [line[:300] for line in found[:keep]]


def cpu_seconds(pid: int | None) -> float | None:
    """A process's user + system CPU seconds with its children's that it waited for
    (/proc/PID/stat fields 14-17); None when it cannot be read."""
    own = None if pid is None else _stat_ticks(Path(f"/proc/{pid}/stat"))
    return None if own is None else own[1] / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU of this process's children that have ended and been waited for (the
    SIPp phones of a run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_seconds(pid: int | None, proc: Path = Path("/proc")) -> float | None:
    """cpu_seconds of a process and of its live children (PostgreSQL's backends): a child
    that ended was waited for, so its CPU is in the parent's cutime/cstime by then. None
    when the process itself cannot be read."""
    if pid is None:
        return None
    own = _stat_ticks(proc / str(pid) / "stat")
    if own is None:
        return None
    total = own[1]
    for entry in proc.iterdir():
        if entry.name.isdigit() and entry.name != str(pid):
            child = _stat_ticks(entry / "stat")
            if child is not None and child[0] == pid:
                total += child[1]
    return total / os.sysconf("SC_CLK_TCK")


def _stat_ticks(path: Path) -> tuple[int, int] | None:
    """(parent pid, utime + stime + cutime + cstime) from a /proc/PID/stat; None if unreadable
    (the process ended meanwhile)."""
    try:
        fields = path.read_text().rpartition(")")[2].split()
        return int(fields[1]), sum(int(v) for v in fields[11:15])
    except (OSError, ValueError, IndexError):
        return None

