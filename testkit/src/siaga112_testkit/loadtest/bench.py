"""`siaga112-testkit bench`: the same citizens' load through (a) Asterisk's own dialplan, app_queue
offering each caller one desk phone (trunk-bench, 127.0.0.4 -> Queue(siaga112-bench)), and (b) the
daemon's full path (the mobile and landline trunks -> Stasis -> the daemon), one after the other
in one run on the same desk phones, printed side by side with their ratio.

Three parts: rate steps (the highest rate with no failed call, per path), a burst (1000 callers
at 100 a second on 8 operators) and a blocked-number flood (a prank dialer on a blocked
number at the highest rate the PBX took, beside genuine callers: the daemon sheds the flood).
Beside the daemon's first step, the same load through the ARI floor (floor.py: the daemon's
conversation with Asterisk and nothing else), so that the summary tells, in the same hour, how
much of the daemon's CPU a call is that conversation and how much its own work; both runs are
sampled by CPU time (cpuprof.py), so the summary also splits each one's CPU a call by part of
the call, and flame graphs of both are written beside the reports. After the steps, waves of 8
callers to free desk phones (waves.py) measure the daemon's CPU on the path from arrival to an
operator by itself, apart from the call's end, as the goal words it, and the same waves on the
floor tell how much of that path is Asterisk's conversation. The summary ends with the goals the
bench is held to, each judged from the run's own figures (goals()).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from siaga112.settings import Settings
from siaga112_testkit import cpuprof
from siaga112_testkit.devstack.pbx import DEFAULT_ROOT
from siaga112_testkit.loadtest import report as rp
from siaga112_testkit.loadtest.daemon import (
    DaemonApi,
    DaemonError,
    Say,
    daemon_running,
    restore_operators,
    set_operators,
)
from siaga112_testkit.loadtest.floor import FloorError, floor_running
from siaga112_testkit.loadtest.phones import CallerGroup, DeskPlan, national_number
from siaga112_testkit.loadtest.plot import plot_reports
from siaga112_testkit.loadtest.runner import (
    CallPath,
    LoadPlan,
    RunContext,
    local_pbx_pid,
    local_service_pids,
    restart_local_pbx,
    run_load,
    wait_at_rest,
)
from siaga112_testkit.loadtest.waves import (
    WavePlan,
    WavesReport,
    waves_on_own_daemon,
    waves_on_the_floor,
)
from siaga112_testkit.loadtest.waves import render as render_waves
from siaga112_testkit.sipp import SippError
from siaga112_testkit.topology import BENCH_TRUNK, LANDLINE_TRUNK, MOBILE_TRUNK

LOCAL_PBX = "127.0.0.1:5060"
# The daemon under bench: no wrap-up (app_queue's wrapuptime is 0 too), and a blocked caller
# hung up one second after the announcement starts, so that the flood is shed quickly.
DAEMON_OVERRIDES = {"SIAGA112_QUEUE__WRAPUP": "0", "SIAGA112_SCREENING__BYPASS_WAIT": "1"}
WAVES = WavePlan()  # 12 waves of 8 callers at 10/s, hold 3 s
DESK = DeskPlan(operators=8, ring=0.3, talk=1.0, code_at=0.5,
                codes=[f"*3{n:02d}" for n in (1, 2, 5, 6, 7, 9, 11, 12)])
# A 112 caller should hear the answer within a second: the rate steps also report the highest
# clean rate whose p99 INVITE -> 200 OK stays within this.
PROMPT_P99_MS = 1000.0
FLOOD_HOLD = 5.0  # s a prank caller stays on if nobody hangs up on them


@dataclass(frozen=True)
class BenchOptions:
    remote: str = LOCAL_PBX
    rates: Sequence[float] = (10, 20, 40, 80)
    step_seconds: float = 8.0
    hold: float = 1.0
    burst_calls: int = 1000
    burst_rate: float = 100.0
    flood_seconds: float = 10.0
    flood_rate: float = 0.0  # 0: the highest rate the dialplan path took in the steps
    genuine_rate: float = 2.0
    skip: frozenset[str] = frozenset()


STEP_PATHS = (CallPath.DAEMON, CallPath.DIALPLAN)  # the two compared in the steps


@dataclass
class Step:
    rate: float
    daemon: rp.LoadReport | None = None
    dialplan: rp.LoadReport | None = None


@dataclass
class BenchResult:
    steps: list[Step] = field(default_factory=list)
    burst: dict[str, rp.LoadReport] = field(default_factory=dict)
    flood: dict[str, rp.LoadReport] = field(default_factory=dict)
    floor: rp.LoadReport | None = None  # the ARI floor at the first step's rate
    floor_not_run: str = ""  # why the floor did not run (a daemon already held the app...)
    # CPU-time samples of the daemon's first step and of the floor ("daemon", "floor")
    profiles: dict[str, cpuprof.Profile] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)  # runs whose daemon could not start
    waves: WavesReport | None = None  # the path from arrival to an operator, by itself
    # The local test PBX restarted between runs: it did not come to rest (what it was doing)
    pbx_restarts: list[str] = field(default_factory=list)
    # The same waves on the ARI floor: what of that path is Asterisk's conversation
    floor_waves: WavesReport | None = None
    floor_waves_not_run: str = ""  # why they did not run (a measure missing, not a failure)

    def highest_clean(self, path: CallPath) -> float | None:
        rates = [s.rate for s in self.steps if (r := getattr(s, path.value)) and clean(r)]
        return max(rates) if rates else None

    def highest_prompt(self, path: CallPath) -> float | None:
        """The highest clean rate whose callers also heard the answer promptly (p99)."""
        rates = [s.rate for s in self.steps
                 if (r := getattr(s, path.value)) and clean(r) and prompt(r)]
        return max(rates) if rates else None


def clean(report: rp.LoadReport) -> bool:
    """No failed call, every call answered, every SIPp ended by itself, and on the daemon's
    path no call handed back to the dialplan."""
    return (report.clean and report.answered == report.offered
            and not report.dispositions.get("fallback"))


def prompt(report: rp.LoadReport) -> bool:
    """The callers' INVITE -> 200 OK p99 within PROMPT_P99_MS."""
    p99 = report.sip_answer_ms.p99
    return p99 is not None and p99 <= PROMPT_P99_MS


def groups(path: CallPath, name: str, rate: float, calls: int, hold: float | None,
           callers: tuple[str, str]) -> list[CallerGroup]:
    """The load split in two SIPp callers: mobile and landline trunks (daemon path) or two
    ports of trunk-bench (dialplan path)."""
    first = (calls + 1) // 2
    second = calls - first
    if path is not CallPath.DIALPLAN:
        ips, ports, media = (MOBILE_TRUNK, LANDLINE_TRUNK), (5060, 5060), (6000, 6000)
    else:
        ips, ports, media = (BENCH_TRUNK, BENCH_TRUNK), (5060, 5061), (6000, 6100)
    out = [CallerGroup(f"{name}-1", ips[0], callers[0], rate=rate * first / calls, calls=first,
                       hold=hold, port=ports[0], media_port=media[0])]
    if second:
        out.append(CallerGroup(f"{name}-2", ips[1], callers[1], rate=rate * second / calls,
                               calls=second, hold=hold, port=ports[1], media_port=media[1]))
    return out


class Bench:
    """Runs the plans of the three parts. Each daemon-path run gets a daemon of its own (unless
    one was already running, which is then used throughout), so that one run's leftovers in
    the daemon (operators' states) never weigh on the next."""

    def __init__(self, settings: Settings, options: BenchOptions, out: Path, say: Say) -> None:
        self.settings = settings
        self.options = options
        self.out = out
        self.say = say
        local = options.remote == LOCAL_PBX
        self.queue_log = DEFAULT_ROOT / "var/log/asterisk/queue_log" if local else None
        self.pbx_pid = local_pbx_pid() if local else None
        self.service_pids = local_service_pids() if local else {}
        self.pbx_restarts: list[str] = []
        self.restart_pbx = restart_local_pbx  # the local test PBX, stopped and started again

    async def at_rest(self, ctx: RunContext, before: str) -> None:
        """The PBX at rest before a run. The local test PBX that does not come to rest, even
        after the channels left were hung up (app_queue's 1000-caller burst left 800 channels
        and Asterisk spinning on both cores for 15 minutes: the flood after it could not start
        its daemon or its phones), is restarted, and the summary says so. A remote PBX is
        never touched: its run notes that it was not at rest."""
        unrest = await wait_at_rest(ctx)
        if unrest is None or self.pbx_pid is None:
            return
        self.say(f"  the test PBX is not at rest before {before} ({unrest}): restarting it")
        self.pbx_restarts.append(f"before {before}: {unrest}")
        self.pbx_pid = ctx.pbx_pid = await asyncio.to_thread(self.restart_pbx)
        still = await wait_at_rest(ctx)
        if still is not None:
            self.pbx_restarts.append(f"before {before}, after the restart: {still}")

    @staticmethod
    def fresh_callers() -> tuple[str, str]:
        """Numbers of this run's own (its records are those of these callers since it began)."""
        return national_number("0811", 8), national_number("0254", 6)

    async def run(self, plan: LoadPlan, blocked: str | None = None,
                  profiles: dict[str, cpuprof.Profile] | None = None) -> rp.LoadReport:
        """One plan; blocked: a number the daemon blocks for this run only; profiles: where
        the daemon's CPU-time samples of the run go (as "daemon"). Raises DaemonError when
        the daemon for a daemon-path plan does not start."""
        ctx = RunContext(self.settings, self.options.remote, self.out, self.say,
                         queue_log=self.queue_log, pbx_pid=self.pbx_pid,
                         service_pids=self.service_pids)
        # The PBX at rest first: a daemon started while it still tears down the last run's
        # calls (the 300 calls/s step on app_queue) may not get through its start-up in time.
        await self.at_rest(ctx, plan.name)
        if plan.path is CallPath.DIALPLAN:
            report = await run_load(plan, ctx)
        else:
            sampled = profiles is not None
            async with daemon_running(self.settings, DAEMON_OVERRIDES, self.say,
                                      sampled=sampled) as daemon:
                report = await self._on_daemon(plan, daemon.api, blocked, daemon.logfile,
                                               daemon.pid, profiles, daemon.folded)
                if not daemon.started_by_us:
                    report.notes.append("a daemon was already running: its own settings")
        self.say(rp.render(report))
        return report

    async def attempt(self, plan: LoadPlan, result: BenchResult, blocked: str | None = None,
                      profiles: dict[str, cpuprof.Profile] | None = None
                      ) -> rp.LoadReport | None:
        """run(), but a daemon or SIPp phones that do not start (a PBX the last run left
        saturated keeps the phones' ports or the daemon's start-up) are a line in the summary,
        and the rest of the bench goes on."""
        try:
            return await self.run(plan, blocked, profiles=profiles)
        except (DaemonError, SippError) as exc:
            who = "the daemon" if isinstance(exc, DaemonError) else "its SIPp phones"
            self.say(f"  {plan.name}: NOT RUN: {exc}")
            result.not_run.append(f"{plan.name}: {who} did not start: {exc}")
            return None

    async def _on_daemon(self, plan: LoadPlan, api: DaemonApi, blocked: str | None,
                         daemon_log: Path | None, daemon_pid: int | None,
                         profiles: dict[str, cpuprof.Profile] | None = None,
                         folded: Path | None = None) -> rp.LoadReport:
        names = list(self.settings.queue.operators)
        before = await set_operators(api, names, plan.desk.operators)
        try:
            if blocked:
                await api.block(blocked, hours=1, reason="bench: blocked-number flood")
                await asyncio.sleep(1.0)  # the daemon reloads its blocklist when told
            ctx = RunContext(self.settings, self.options.remote, self.out, self.say, api=api,
                             daemon_log=daemon_log, pbx_pid=self.pbx_pid, daemon_pid=daemon_pid,
                             service_pids=self.service_pids)
            if profiles is None or daemon_pid is None or folded is None:
                return await run_load(plan, ctx)
            async with cpuprof.sampling(daemon_pid, folded) as taken:
                report = await run_load(plan, ctx)
            profiles["daemon"] = taken
            return report
        finally:
            if blocked:
                await api.unblock(blocked, reason="bench over")
            await restore_operators(api, before)

    async def steps(self, result: BenchResult) -> None:
        o = self.options
        for path in (CallPath.DAEMON, CallPath.DIALPLAN):
            for rate in o.rates:
                calls = max(2, round(rate * o.step_seconds))
                plan = LoadPlan(f"{path.value}-{rate:g}cps", path,
                                groups(path, "citizens", rate, calls, o.hold,
                                       self.fresh_callers()),
                                DESK, max_seconds=o.step_seconds + o.hold + 40)
                first = path is CallPath.DAEMON and rate == o.rates[0]
                sample = first and "profile" not in o.skip
                report = await self.attempt(plan, result,
                                            profiles=result.profiles if sample else None)
                if report is None:
                    break
                step = next((s for s in result.steps if s.rate == rate), None)
                if step is None:
                    step = Step(rate)
                    result.steps.append(step)
                setattr(step, path.value, report)
                if first and "floor" not in o.skip:
                    await self.floor(result, rate, calls)
                if not clean(report):
                    self.say(f"  {path.value}: calls failed at {rate:g}/s; stepping stops")
                    break

    async def floor(self, result: BenchResult, rate: float, calls: int) -> None:
        """The first step's load again, through the ARI floor instead of the daemon."""
        o = self.options
        plan = LoadPlan(f"floor-{rate:g}cps", CallPath.FLOOR,
                        groups(CallPath.FLOOR, "citizens", rate, calls, o.hold,
                               self.fresh_callers()),
                        DESK, max_seconds=o.step_seconds + o.hold + 40)
        ctx = RunContext(self.settings, self.options.remote, self.out, self.say,
                         pbx_pid=self.pbx_pid, service_pids=self.service_pids)
        await self.at_rest(ctx, plan.name)
        try:
            sampled = "profile" not in o.skip
            async with floor_running(self.settings, plan.desk.operators, self.say,
                                     sampled=sampled) as floor:
                ctx.service_pids = {**self.service_pids, rp.FLOOR_SERVICE: floor.pid}
                if floor.folded is None:
                    report = await run_load(plan, ctx)
                else:
                    async with cpuprof.sampling(floor.pid, floor.folded) as taken:
                        report = await run_load(plan, ctx)
                    result.profiles["floor"] = taken
        except FloorError as exc:  # a measure missing, not a failure of the product
            self.say(f"  {plan.name}: NOT RUN: {exc}")
            result.floor_not_run = str(exc)
            return
        report.floor_counts = floor.counts
        self.say(rp.render(report))
        result.floor = report

    async def waves(self, result: BenchResult) -> None:
        """The path from arrival to an operator by itself (waves.py), on a daemon of its own."""
        ctx = RunContext(self.settings, self.options.remote, self.out / "waves", self.say,
                         pbx_pid=self.pbx_pid)
        await self.at_rest(ctx, "the waves")
        self.say("  waves: the path from arrival to an operator, by itself")
        try:
            result.waves = await waves_on_own_daemon(self.settings, WAVES, ctx)
        except (DaemonError, SippError, RuntimeError) as exc:
            self.say(f"  waves: NOT RUN: {exc}")
            result.not_run.append(f"waves: {exc}")

    async def floor_waves(self, result: BenchResult) -> None:
        """The same waves on the ARI floor, right after the daemon's: the part of the path
        from arrival to an operator that is Asterisk's conversation, in the same hour."""
        ctx = RunContext(self.settings, self.options.remote, self.out / "floor-waves",
                         self.say, pbx_pid=self.pbx_pid)
        await self.at_rest(ctx, "the floor's waves")
        self.say("  waves on the ARI floor: Asterisk's conversation on the same path")
        try:
            result.floor_waves = await waves_on_the_floor(self.settings, WAVES, ctx)
        except (FloorError, SippError, RuntimeError) as exc:  # a measure missing, not a fault
            self.say(f"  waves on the ARI floor: NOT RUN: {exc}")
            result.floor_waves_not_run = str(exc)

    async def burst(self, result: BenchResult) -> None:
        o = self.options
        for path in (CallPath.DAEMON, CallPath.DIALPLAN):
            plan = LoadPlan(f"{path.value}-burst", path,
                            groups(path, "burst", o.burst_rate, o.burst_calls, None,
                                   self.fresh_callers()),
                            DESK, max_seconds=300, expected=frozenset({"genuine"}))
            if (report := await self.attempt(plan, result)) is not None:
                result.burst[path.value] = report

    async def flood(self, result: BenchResult) -> None:
        o = self.options
        rate = o.flood_rate or result.highest_clean(CallPath.DIALPLAN) or 100.0
        prank = national_number("0819", 8)
        genuine = self.fresh_callers()[1]
        genuine_calls = max(1, round(o.genuine_rate * o.flood_seconds))
        for path in (CallPath.DAEMON, CallPath.DIALPLAN):
            daemon = path is CallPath.DAEMON
            flood_calls = max(1, round(rate * o.flood_seconds))
            plan = LoadPlan(f"{path.value}-flood", path, [
                CallerGroup("prank", MOBILE_TRUNK if daemon else BENCH_TRUNK, prank,
                            rate=rate, calls=flood_calls, hold=FLOOD_HOLD, audio=False),
                CallerGroup("genuine", LANDLINE_TRUNK if daemon else BENCH_TRUNK,
                            genuine, rate=o.genuine_rate, calls=genuine_calls,
                            hold=None, port=5060 if daemon else 5061,
                            media_port=6000 if daemon else 6100),
            ], DESK, max_seconds=o.flood_seconds + FLOOD_HOLD + 120,
                expected=frozenset({"genuine", "abandoned", "blocked"}))
            report = await self.attempt(plan, result, blocked="+62" + prank[1:])
            if report is not None:
                result.flood[path.value] = report


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "n/a"


def _row(label: str, r: rp.LoadReport | None) -> str:
    if r is None:
        return f"{label:<9} -"
    return (f"{label:<9} offered {r.offered:>5} answered {r.answered:>5} failed {r.failed:>4}  "
            f"INVITE->200 p50 {_ms(r.sip_answer_ms.p50)} p99 {_ms(r.sip_answer_ms.p99)}  "
            f"wait p50 {_s(r.wait_to_operator_s.p50)} p95 {_s(r.wait_to_operator_s.p95)}"
            + _take_in(r) + _costs(r))


def _take_in(r: rp.LoadReport) -> str:
    """The daemon's take-in p99, how much of its slowest 1% was a wait for a core, the p99
    of each take-in less its wait (the daemon's own), and how old Asterisk's StasisStart was
    when it was routed (p99)."""
    if r.path != "daemon" or r.answer_latency_ms.p99 is None:
        return ""
    cpu = "" if r.take_in_cpu_share is None else f" ({r.take_in_cpu_share:.0%} waiting for a CPU)"
    if r.take_in_own_ms.p99 is not None:
        cpu += f", less the waits p99 {r.take_in_own_ms.p99:.2f} ms"
    age = "" if r.event_age_ms.p99 is None else f", StasisStart age p99 {r.event_age_ms.p99:.0f} ms"
    return f"\n            taken in p99 {r.answer_latency_ms.p99:.2f} ms{cpu}{age}"


def _costs(r: rp.LoadReport) -> str:
    pc = r.per_call()
    parts = [f"{label} {pc[key]:g}" for key, label in (
        ("daemon_cpu_ms", "daemon CPU ms/call"), ("floor_cpu_ms", "ARI floor CPU ms/call"),
        ("ari_requests", "ARI req/call"), ("ari_events", "ARI events/call"),
        ("pbx_cpu_ms", "Asterisk CPU ms/call"), ("sipp_cpu_ms", "SIPp CPU ms/call"),
        ("postgres_cpu_ms", "PostgreSQL CPU ms/call"),
        ("mosquitto_cpu_ms", "Mosquitto CPU ms/call")) if pc[key] is not None]
    if r.path == "daemon" and (r.daemon_error_lines or r.wrong_dispositions):
        parts.append(f"ERRORS {r.daemon_error_lines} log lines, {r.wrong_dispositions}")
    return ("\n            " + ", ".join(parts)) if parts else ""


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f} ms"


def _s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} s"


def summary(result: BenchResult) -> str:
    lines = ["", "=== bench summary ==="]
    if result.steps:
        lines.append("rate steps (callers hold after the answer; no failed call = clean):")
        for s in result.steps:
            for label, r in (("daemon", s.daemon), ("dialplan", s.dialplan)):
                mark = "" if r is None else ("  clean" if clean(r) else "  FAILED")
                lines.append(f"  {s.rate:>5g}/s {_row(label, r)}{mark}")
        d, q = result.highest_clean(CallPath.DAEMON), result.highest_clean(CallPath.DIALPLAN)
        lines.append(f"highest rate with no failed call: daemon {_per_s(d)}, dialplan "
                     f"app_queue {_per_s(q)}; ratio daemon/app_queue {_ratio(d, q)}")
        d, q = result.highest_prompt(CallPath.DAEMON), result.highest_prompt(CallPath.DIALPLAN)
        lines.append(f"... and also answered within {PROMPT_P99_MS:.0f} ms at p99: daemon "
                     f"{_per_s(d)}, dialplan app_queue {_per_s(q)}; ratio {_ratio(d, q)}")
    lines += _floor_lines(result)
    lines += _profile_lines(result)
    lines += _waves_lines(result)
    for title, part in (("burst", result.burst), ("flood", result.flood)):
        if not part:
            continue
        lines.append(f"{title}:")
        for label in ("daemon", "dialplan"):
            r = part.get(label)
            lines.append(f"  {_row(label, r)}")
            if r is not None:
                for g in r.groups:
                    lines.append(f"      {g.name:<10} offered {g.offered}, answered {g.answered}, "
                                 f"failed {g.failed}, ended by the PBX {g.hung_up_by_pbx}")
                if r.dispositions:
                    lines.append(f"      records: {r.dispositions}; reached an operator "
                                 f"{r.connected}")
                elif r.connected:
                    lines.append(f"      reached an operator (queue_log) {r.connected}")
    lines += _goal_lines(result)
    for line in result.pbx_restarts:
        lines.append(f"note: the test PBX was restarted, not at rest {line}")
    for line in result.not_run:
        lines.append(f"NOT RUN {line}")
    return "\n".join(lines)


def _waves_lines(result: BenchResult) -> list[str]:
    w = result.waves
    if w is None:
        return []
    lines = [render_waves(w, title="waves (the path from arrival to an operator, by itself):")]
    if result.floor_waves is not None:
        lines.append(render_waves(result.floor_waves, who="floor",
                                  title="the same waves on the ARI floor (Asterisk's "
                                        "conversation, nothing else):"))
    elif result.floor_waves_not_run:
        lines.append(f"the same waves on the ARI floor NOT RUN: {result.floor_waves_not_run}")
    return lines


def _floor_lines(result: BenchResult) -> list[str]:
    """The daemon's CPU a call at the first step beside the floor's, each over Asterisk's own
    in its run (the VM's hour moves all of them alike)."""
    f = result.floor
    d = result.steps[0].daemon if result.steps else None
    if result.floor_not_run:
        return [f"ARI floor NOT RUN: {result.floor_not_run}"]
    if f is None:
        return []
    fc = f.per_call()
    lines = [f"ARI floor (the daemon's conversation with Asterisk alone) at "
             f"{f.offered_cps:g}/s: {_row('floor', f)}"]
    floor_ms, floor_pbx = fc["floor_cpu_ms"], fc["pbx_cpu_ms"]
    dc = d.per_call() if d is not None else {}
    daemon_ms, daemon_pbx = dc.get("daemon_cpu_ms"), dc.get("pbx_cpu_ms")
    if floor_ms and floor_pbx and daemon_ms and daemon_pbx:
        share = (floor_ms / floor_pbx) / (daemon_ms / daemon_pbx)
        lines.append(
            f"  CPU a call over Asterisk's own in the same run: daemon {daemon_ms:g} / "
            f"{daemon_pbx:g} = {daemon_ms / daemon_pbx:.2f}, floor {floor_ms:g} / {floor_pbx:g} "
            f"= {floor_ms / floor_pbx:.2f}: the conversation is {share:.0%} of the daemon's "
            f"CPU, its own work {1 - share:.0%} (at the daemon's hour: "
            f"{daemon_ms * share:.2f} + {daemon_ms * (1 - share):.2f} ms)")
    bad = f.floor_not_2xx()
    if bad or f.floor_counts.get("faults"):
        lines.append(f"  the floor's requests not answered 2xx {bad}; handlers that raised "
                     f"{f.floor_counts.get('faults', 0)}")
    return lines


def _profile_cpu_ms(result: BenchResult, name: str) -> float | None:
    if name == "daemon":
        report = result.steps[0].daemon if result.steps else None
        return report.per_call().get("daemon_cpu_ms") if report else None
    return result.floor.per_call().get("floor_cpu_ms") if result.floor else None


def _profile_lines(result: BenchResult) -> list[str]:
    """Each sampled run's CPU a call by part of the call (cpuprof.PARTS)."""
    if not result.profiles:
        return []
    lines = ["CPU a call by part (samples of CPU time; flame graphs profile-*.svg):"]
    for name in ("daemon", "floor"):
        taken = result.profiles.get(name)
        if taken is None:
            continue
        if taken.problem or not taken.folded:
            lines.append(f"  {name}: no profile: {taken.problem or 'no samples'}")
            continue
        lines.append(f"  {name}: {cpuprof.parts_line(taken.folded, _profile_cpu_ms(result, name))}")
    return lines


# The goals the bench is held to (issue 13), each judged from the run's own figures.
CPU_GOAL_MS = 5.0  # the daemon's CPU a call on the path to an operator (and at every step)
ANSWER_GOAL_MS = 5.0  # StasisStart -> answer p99 at the daemon's highest clean rate
TAKE_IN_GOAL_MS = 5.0  # the take-in p99 at the daemon's highest clean rate


@dataclass(frozen=True)
class Goal:
    name: str
    met: bool | None  # None: not measured by this run (a part skipped, or not run)
    detail: str
    how: str = ""  # how a goal met was met, when not by its figure alone

    def line(self) -> str:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        if self.met and self.how:
            verdict += f" ({self.how})"
        return f"  {self.name}: {verdict}: {self.detail}"


def goals(result: BenchResult) -> list[Goal]:
    """The issue's four goals, in its own words: clean wherever app_queue is, the answer
    (StasisStart -> answer), the daemon's CPU on the path to an operator, the burst."""
    return [_clean_goal(result), _answer_goal(result), _path_cpu_goal(result),
            _burst_goal(result)]


def tracked(result: BenchResult) -> list[Goal]:
    """Stricter figures the bench also holds the daemon to, beyond the issue's words: the
    whole call's CPU at every step (not only its path to an operator), and the take-in (the
    StasisStart routed -> the call's first step: the caller's silence before the music)."""
    return [_cpu_goal(result), _take_in_goal(result)]


def _clean_goal(result: BenchResult) -> Goal:
    name = "clean at every rate app_queue is clean at"
    ran = {p: [s.rate for s in result.steps if getattr(s, p.value) is not None]
           for p in STEP_PATHS}
    if not ran[CallPath.DAEMON] or not ran[CallPath.DIALPLAN]:
        return Goal(name, None, "the steps did not run on both paths")
    ok = {p: {s.rate for s in result.steps if (r := getattr(s, p.value)) and clean(r)}
          for p in STEP_PATHS}
    missing = sorted(ok[CallPath.DIALPLAN] - ok[CallPath.DAEMON])
    d, q = result.highest_clean(CallPath.DAEMON), result.highest_clean(CallPath.DIALPLAN)
    detail = f"daemon clean to {_per_s(d)}, app_queue to {_per_s(q)}"
    if missing:
        detail += "; the daemon not clean at " + ", ".join(f"{r:g}/s" for r in missing)
    return Goal(name, not missing, detail)


def _cpu_goal(result: BenchResult) -> Goal:
    name = f"daemon CPU a call <= {CPU_GOAL_MS:g} ms at every step"
    # Each step's share of callers who reached an operator: above what the desk takes (8
    # phones, ring 0.3 s) most callers leave the queue first, and their calls cost less.
    rows = [(s.rate, ms, s.daemon.connected / s.daemon.offered if s.daemon.offered else 0.0)
            for s in result.steps
            if s.daemon is not None and (ms := s.daemon.per_call()["daemon_cpu_ms"]) is not None]
    if not rows:
        return Goal(name, None, "no daemon step measured its CPU")
    under = [f"{rate:g} ({ms:g} ms, {share:.0%})" for rate, ms, share in rows
             if ms <= CPU_GOAL_MS]
    over = [f"{rate:g} ({ms:g} ms, {share:.0%})" for rate, ms, share in rows if ms > CPU_GOAL_MS]
    parts = []
    if under:
        parts.append("within it at " + ", ".join(under))
    if over:
        parts.append("over it at " + ", ".join(over))
    return Goal(name, not over, "; ".join(parts)
                + " (calls/s, CPU a call, share of callers who reached an operator)")


def _top_step(result: BenchResult) -> tuple[float, Step, rp.LoadReport] | None:
    """The daemon's highest clean rate, its step and the daemon's report of it (None when no
    daemon step was clean)."""
    top = result.highest_clean(CallPath.DAEMON)
    step = next((s for s in result.steps if s.rate == top), None)
    if top is None or step is None or step.daemon is None:
        return None
    return top, step, step.daemon


def _answer_goal(result: BenchResult) -> Goal:
    """The issue's "StasisStart->answer p99 <= 5 ms at the highest clean rate; the answer is
    never queued behind bookkeeping requests": from the records, 0 for each call the dialplan
    answered before Stasis() (its StasisStart found the channel Up), the take-in for one the
    daemon answered (its answer request is the take-in's first step)."""
    name = f"StasisStart->answer p99 <= {ANSWER_GOAL_MS:g} ms at the daemon's highest clean rate"
    found = _top_step(result)
    if found is None or (p99 := found[2].stasis_to_answer_ms.p99) is None:
        return Goal(name, None, "no clean daemon step with its answers recorded")
    top, step, r = found
    detail = f"{p99:.2f} ms at {top:g}/s; answered by {rp.answered_by_text(r.answered_by)}"
    if set(r.answered_by) == {"dialplan"}:
        detail += " (each answer before its StasisStart: none waited for the daemon)"
    q = step.dialplan
    sip = r.sip_answer_ms.p99
    if sip is not None:
        detail += f"; the callers' INVITE->200 p99 {sip:g} ms"
        if q is not None and q.sip_answer_ms.p99 is not None:
            detail += f", app_queue's {q.sip_answer_ms.p99:g}"
    return Goal(name, p99 <= ANSWER_GOAL_MS, detail)


def _path_cpu_goal(result: BenchResult) -> Goal:
    name = (f"daemon CPU a call <= {CPU_GOAL_MS:g} ms on the path from arrival to an operator "
            f"(waves)")
    w = result.waves
    if w is None:
        return Goal(name, None, "the waves did not run")
    if not w.measured:
        return Goal(name, None, "no wave had every caller reach an operator")
    mean = statistics.fmean(x.to_operator_ms for x in w.measured)
    detail = (f"{mean:.2f} ms on the mean of {len(w.measured)} waves of {w.size} callers at "
              f"{w.rate:g}/s (the rest of the call "
              f"{statistics.fmean(x.rest_ms for x in w.measured):.2f})")
    if not w.clean:
        detail += f"; {len(w.waves) - len(w.measured)} waves left out (callers not connected)"
    met = mean <= CPU_GOAL_MS and w.clean
    how = ""
    f = result.floor_waves
    if f is not None and f.measured:
        floor = statistics.fmean(x.to_operator_ms for x in f.measured)
        own = mean - floor
        detail += (f"; of it Asterisk's conversation (the ARI floor's waves) {floor:.2f} ms, "
                   f"the daemon's own work {own:.2f}")
        # The "Done when": the part of the cost that is Asterisk's own and cannot be
        # removed from the daemon's side. Met so only when the daemon's own work is within the
        # goal, i.e. all of the excess over it lies inside Asterisk's conversation.
        if not met and w.clean and f.clean and own <= CPU_GOAL_MS:
            met, how = True, "by the issue's 'Done when'"
            detail += (f": the {mean - CPU_GOAL_MS:.2f} ms over {CPU_GOAL_MS:g} is inside "
                       f"Asterisk's conversation, which any ARI application taking these "
                       f"calls pays")
    return Goal(name, met, detail, how)


def _take_in_goal(result: BenchResult) -> Goal:
    name = f"taken in p99 <= {TAKE_IN_GOAL_MS:g} ms at the daemon's highest clean rate"
    found = _top_step(result)
    if found is None or (p99 := found[2].answer_latency_ms.p99) is None:
        return Goal(name, None, "no clean daemon step with its take-in recorded")
    top, _, r = found
    detail = f"{p99:.2f} ms at {top:g}/s"
    if r.take_in_cpu_share is not None:
        detail += f" ({r.take_in_cpu_share:.0%} of the slowest 1% waiting for a CPU"
        if r.take_in_own_ms.p99 is not None:
            detail += f"; less the waits {r.take_in_own_ms.p99:.2f} ms"
        detail += ")"
    # "Up to": the highest rate at and below which every daemon step was clean and within the
    # goal; a step within it above one that was not is named apart.
    ok = [(s.rate, _taken_in_time(s.daemon))
          for s in sorted(result.steps, key=lambda s: s.rate) if s.daemon is not None]
    upto = None
    for rate, good in ok:
        if not good:
            break
        upto = rate
    again = [rate for rate, good in ok if good and (upto is None or rate > upto)]
    detail += (f"; within it at every step up to {upto:g}/s" if upto is not None
               else "; over it from the lowest step")
    if again:
        detail += " (within it again at " + ", ".join(f"{rate:g}/s" for rate in again) + ")"
    return Goal(name, p99 <= TAKE_IN_GOAL_MS, detail
                + "; the callers' answer itself is the dialplan's, before Stasis()")


def _taken_in_time(r: rp.LoadReport) -> bool:
    p99 = r.answer_latency_ms.p99
    return clean(r) and p99 is not None and p99 <= TAKE_IN_GOAL_MS


def _burst_goal(result: BenchResult) -> Goal:
    name = "burst: all answered, none handed back, all reach an operator, CPU <= app_queue's"
    d, q = result.burst.get("daemon"), result.burst.get("dialplan")
    if d is None:
        return Goal(name, None, "the daemon's burst did not run")
    back = d.dispositions.get("fallback", 0)
    answered = d.answered == d.offered
    reached = d.connected == d.offered
    detail = (f"{d.offered} callers at {d.offered_cps:g}/s: answered {d.answered}, handed back "
              f"{back}, reached an operator {d.connected}")
    dc, qc = d.per_call(), (q.per_call() if q else {})
    mine = (None if dc["daemon_cpu_ms"] is None or dc["pbx_cpu_ms"] is None
            else dc["daemon_cpu_ms"] + dc["pbx_cpu_ms"])
    theirs = qc.get("pbx_cpu_ms")
    cpu_ok: bool | None = None
    if mine is not None and theirs is not None:
        cpu_ok = mine <= theirs
        detail += (f"; daemon + Asterisk {dc['daemon_cpu_ms']:g} + {dc['pbx_cpu_ms']:g} ms a "
                   f"call against app_queue's {theirs:g}")
    else:
        detail += "; the CPU of app_queue's burst not measured"
    met: bool | None = answered and not back and reached
    if met and cpu_ok is not True:
        met = cpu_ok
    return Goal(name, met, detail)


def _per_s(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:g}/s"


def _goal_lines(result: BenchResult) -> list[str]:
    if not result.steps and not result.burst and result.waves is None:
        return []
    return (["goals (issue 13), judged from this run's figures:"]
            + [g.line() for g in goals(result)]
            + ["stricter figures, beyond the issue's words:"]
            + [g.line() for g in tracked(result)])


async def run_bench(settings: Settings, options: BenchOptions, out: Path, say: Say) -> int:
    result = BenchResult()
    bench = Bench(settings, options, out, say)
    if "steps" not in options.skip:
        await bench.steps(result)
    if "waves" not in options.skip:
        await bench.waves(result)
        if "floor" not in options.skip:
            await bench.floor_waves(result)
    if "burst" not in options.skip:
        await bench.burst(result)
    if "flood" not in options.skip:
        await bench.flood(result)
    result.pbx_restarts = bench.pbx_restarts
    text = summary(result)
    say(text)
    _write(result, text, out)
    say(f"bench reports in {out}")
    return 1 if result.not_run else 0


def _write(result: BenchResult, text: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(text + "\n")
    doc = {
        "highest_clean_cps": {p.value: result.highest_clean(p) for p in STEP_PATHS},
        "highest_prompt_cps": {p.value: result.highest_prompt(p) for p in STEP_PATHS},
        "prompt_p99_ms": PROMPT_P99_MS,
        "steps": [{"rate": s.rate,
                   "daemon": s.daemon.model_dump() if s.daemon else None,
                   "dialplan": s.dialplan.model_dump() if s.dialplan else None}
                  for s in result.steps],
        "burst": {k: v.model_dump() for k, v in result.burst.items()},
        "flood": {k: v.model_dump() for k, v in result.flood.items()},
        "floor": result.floor.model_dump() if result.floor else None,
        "floor_not_run": result.floor_not_run,
        "profiles": {name: {"parts": cpuprof.parts(p.folded), "problem": p.problem,
                            "cpu_ms_per_call": _profile_cpu_ms(result, name)}
                     for name, p in result.profiles.items()},
        "goals": [{"goal": g.name, "met": g.met, "how": g.how, "detail": g.detail}
                  for g in goals(result)],
        "tracked": [{"goal": g.name, "met": g.met, "detail": g.detail}
                    for g in tracked(result)],
        "waves": result.waves.model_dump() if result.waves else None,
        "pbx_restarts": result.pbx_restarts,
        "floor_waves": result.floor_waves.model_dump() if result.floor_waves else None,
        "floor_waves_not_run": result.floor_waves_not_run,
        "not_run": result.not_run,
    }
    (out / "bench.json").write_text(json.dumps(doc, indent=2, default=str))
    for name, taken in result.profiles.items():
        if taken.folded:
            cpu = _profile_cpu_ms(result, name)
            title = f"{name}: CPU a call {cpu:g} ms" if cpu else name
            (out / f"profile-{name}.svg").write_text(cpuprof.render_svg(taken.folded, title))
            (out / f"profile-{name}.folded").write_text(
                "".join(f"{stack} {n}\n" for stack, n in taken.folded.items()))
    for name, part in (("burst", result.burst), ("flood", result.flood)):
        if part:
            plot_reports(list(part.values()), out / f"{name}.png", f"bench: {name}")
    best = [s for s in result.steps if s.daemon and s.dialplan]
    if best:
        top = best[-1]
        assert top.daemon and top.dialplan
        plot_reports([top.daemon, top.dialplan], out / "steps-top.png",
                     f"bench: {top.rate:g} calls/s")
