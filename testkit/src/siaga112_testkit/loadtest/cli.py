"""`siaga112-testkit load-test`, `siaga112-testkit bench` (the Makefile's `make load-test` and
`make bench`) and `siaga112-testkit waves` (the path to an operator by itself, waves.py).

Each takes the test-PBX lock (/tmp/siaga112-test-pbx.lock, the one the test suite takes), makes
sure a daemon is connected, brings up the desk phones, runs the citizens' load, prints the report
and writes it under the reports directory (var/reports/...): JSON and text, and for the load
test and the bench a PNG plot.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import signal
import sys
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK = Path("/tmp/siaga112-test-pbx.lock")
NOT_TEST_PBX_FLAG = "--i-know-this-is-not-the-test-pbx"
TEST_PBX_SIP_HOST = "127.0.0.1"
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def not_the_test_pbx(ari_url: str, ari_password: str, sip: str, local_password: str | None,
                     local_running: bool) -> list[str]:
    """Why the PBX the settings and --pbx name may not be the local test PBX (empty: it is).

    The load test floods a PBX with calls and its drain hangs up every channel it finds, so it
    runs only against the test PBX that `siaga112-testkit stack up` started here: SIP on 127.0.0.1,
    ARI on loopback with the password generated for that PBX, and that PBX running."""
    from urllib.parse import urlsplit

    reasons = []
    sip_host = sip.rsplit(":", 1)[0] if ":" in sip else sip
    if sip_host != TEST_PBX_SIP_HOST:
        reasons.append(f"--pbx {sip} is not the test PBX's SIP address ({TEST_PBX_SIP_HOST})")
    ari_host = urlsplit(ari_url).hostname or ""
    if ari_host not in _LOOPBACK:
        reasons.append(f"ari.url {ari_url} is not on loopback")
    if not local_running:
        reasons.append("the local test PBX (`siaga112-testkit stack up`) is not running")
    if local_password is None or ari_password != local_password:
        reasons.append("ari.password is not the one generated for the local test PBX")
    return reasons


def refuse_other_pbx(args: argparse.Namespace, settings) -> None:  # noqa: ANN001
    """Raise ValueError (exit 2) unless the target is the local test PBX or the user said
    explicitly that it is not and that this is meant."""
    from siaga112_testkit.devstack.pbx import Pbx
    from siaga112_testkit.devstack.stack import repo_root

    pbx = Pbx(repo=repo_root(), state_dir=repo_root() / "var")
    try:
        local_password: str | None = pbx.ari_password_file.read_text().strip() or None
    except OSError:
        local_password = None
    reasons = not_the_test_pbx(settings.ari.url, settings.ari.password.get_secret_value(),
                               args.pbx, local_password, pbx.running())
    if not reasons:
        return
    if args.i_know_this_is_not_the_test_pbx:
        say("WARNING: not the local test PBX (" + "; ".join(reasons) + "): going ahead, as told "
            f"by {NOT_TEST_PBX_FLAG}; its channels will be hung up after the load")
        return
    raise ValueError(
        "refusing to load a PBX that is not the local test PBX: " + "; ".join(reasons)
        + f". The load and its drain would hang up that PBX's calls. If this is meant, add "
        f"{NOT_TEST_PBX_FLAG}.")


def run_main(coro: Coroutine[Any, Any, int]) -> int:
    """asyncio.run, with SIGTERM and SIGINT cancelling the run, so that its phones and the
    daemon it started are stopped by their pids before it exits."""

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await coro
        except asyncio.CancelledError:
            say("stopped by a signal; phones and daemon were stopped")
            return 130

    return asyncio.run(guarded())


def say(msg: str) -> None:
    print(msg, flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "load-test", help="citizens' load against the test PBX and the daemon, with a report")
    p.add_argument("--pbx", default="127.0.0.1:5060", help="the test PBX's SIP address host:port")
    p.add_argument("--rate", type=float, default=5.0, help="calls per second, both trunks")
    p.add_argument("--calls", type=int, default=100, help="number of calls (unless --duration)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="seconds of load; > 0 sets the calls to rate x duration")
    p.add_argument("--hold", type=float, default=3000,
                   help="ms each caller stays on the line after the PBX answers; "
                        "0: until the PBX hangs up")
    p.add_argument("--operators", type=int, default=8, help="desk phones logged in (1..8)")
    p.add_argument("--ring", type=float, default=0.5, help="s a desk phone rings before answering")
    p.add_argument("--talk", type=float, default=2.0, help="s an operator talks, then hangs up")
    p.add_argument("--wrapup", type=float, default=1.0,
                   help="s of wrap-up after each call (only for a daemon this command starts)")
    p.add_argument("--max-seconds", type=float, default=0.0,
                   help="bound of the whole run (default: offering time + hold + 60 s)")
    p.add_argument("--reports", type=Path, help="reports directory (default STATE_DIR/reports)")
    p.add_argument("--progress", type=float, default=5.0, help="s between progress lines")
    p.add_argument(NOT_TEST_PBX_FLAG, action="store_true",
                   help="run against a PBX that is not the local test PBX (refused otherwise)")
    p.set_defaults(func=_load_test)

    p = subparsers.add_parser(
        "bench", help="the daemon's path against Asterisk's own app_queue, side by side")
    p.add_argument("--pbx", default="127.0.0.1:5060")
    p.add_argument("--rates", default="10,20,40,60,80,100,140,180,240,300,400",
                   help="comma-separated rates (calls/s) stepped up until a call fails")
    p.add_argument("--step-seconds", type=float, default=8.0, help="s of load per rate step")
    p.add_argument("--hold", type=float, default=1.0, help="s callers hold in the rate steps")
    p.add_argument("--burst-calls", type=int, default=1000)
    p.add_argument("--burst-rate", type=float, default=100.0)
    p.add_argument("--flood-seconds", type=float, default=10.0)
    p.add_argument("--flood-rate", type=float, default=0.0,
                   help="prank calls/s (default: the highest rate app_queue took in the steps)")
    p.add_argument("--genuine-rate", type=float, default=2.0,
                   help="genuine callers per second alongside the flood")
    p.add_argument("--skip", default="",
                   help="comma-separated parts to skip: steps,waves,burst,flood,floor,profile")
    p.add_argument("--reports", type=Path)
    p.add_argument(NOT_TEST_PBX_FLAG, action="store_true",
                   help="run against a PBX that is not the local test PBX (refused otherwise)")
    p.set_defaults(func=_bench)

    p = subparsers.add_parser(
        "waves", help="the daemon's CPU from arrival to an operator, apart from the call's end")
    p.add_argument("--pbx", default="127.0.0.1:5060")
    p.add_argument("--waves", type=int, default=12, help="waves of callers")
    p.add_argument("--size", type=int, default=8, help="callers a wave (1..8, a desk phone each)")
    p.add_argument("--rate", type=float, default=10.0, help="calls/s within a wave")
    p.add_argument("--hold", type=float, default=3.0,
                   help="s each caller stays on after the answer")
    p.add_argument("--ring", type=float, default=0.3, help="s a desk phone rings")
    p.add_argument("--profile", action="store_true",
                   help="run the daemon under the CPU-time sampler and profile the windows "
                        "from arrival to an operator (waves.folded, waves.svg)")
    p.add_argument("--floor", action="store_true",
                   help="the waves on the ARI floor instead of the daemon: the part of the "
                        "path's CPU that Asterisk's conversation asks of any ARI application")
    p.add_argument("--reports", type=Path)
    p.add_argument(NOT_TEST_PBX_FLAG, action="store_true",
                   help="run against a PBX that is not the local test PBX (refused otherwise)")
    p.set_defaults(func=_waves)


@contextmanager
def pbx_lock() -> Iterator[None]:
    """One user of the local test PBX at a time (the test suite takes the same lock)."""
    with open(LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for the test PBX ({LOCK} is held: a test run or another load run)")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _settings():  # noqa: ANN202 - late import, like the main CLI
    from siaga112.settings import SettingsError, load
    from siaga112_testkit.devstack.stack import repo_root

    local = repo_root() / "var" / "siaga112.toml"
    if "SIAGA112_CONFIG" not in os.environ and local.is_file():
        os.environ["SIAGA112_CONFIG"] = str(local)  # the local stack's, also for the daemon
    in_use = Path(os.environ.get("SIAGA112_CONFIG", "")).resolve()
    if local.is_file() and in_use == local.resolve():
        # Test kit: its calls go to the test database, never the operator's (also the daemon's).
        from siaga112_testkit.devstack.postgres import test_database_url

        os.environ.setdefault("SIAGA112_DATABASE__URL", test_database_url(local.parent))
    from siaga112 import logs

    logs.configure("warning", "console")  # the report is the output; warnings still show
    try:
        return load()
    except SettingsError as exc:  # names the setting, never echoes a value
        print(f"siaga112: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _reports_dir(args: argparse.Namespace, settings, kind: str) -> Path:  # noqa: ANN001
    base = args.reports or settings.state_dir / "reports"
    return base / f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _write(out: Path, stem: str, json_text: str, text: str) -> tuple[Path, Path]:
    """A run's report as JSON and as text in its reports directory."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json_text)
    (out / f"{stem}.txt").write_text(text + "\n")
    return out / f"{stem}.json", out / f"{stem}.txt"


def capacity_note(args: argparse.Namespace) -> str:
    """What the desk can take: above it callers queue, and leave after their hold."""
    cycle = args.ring + args.talk + args.wrapup
    return (f"the desk takes about {args.operators / cycle:.1f} calls/s ({args.operators} "
            f"operators x (ring {args.ring:g} + talk {args.talk:g} + wrap-up {args.wrapup:g} s))"
            f"; above that callers wait, and leave after their hold")


def _load_test(args: argparse.Namespace) -> int:
    from siaga112_testkit.loadtest.daemon import restore_operators, set_operators
    from siaga112_testkit.loadtest.phones import CallerGroup, DeskPlan, national_number
    from siaga112_testkit.loadtest.runner import CallPath, LoadPlan
    from siaga112_testkit.topology import LANDLINE_TRUNK, MOBILE_TRUNK

    if args.rate <= 0:
        raise SystemExit(f"--rate must be above 0, got {args.rate}")
    calls = round(args.rate * args.duration) if args.duration > 0 else args.calls
    if calls < 1:
        raise SystemExit(f"no calls to make: --calls {args.calls}, --duration {args.duration}")
    hold = None if args.hold <= 0 else args.hold / 1000
    mobile_calls = (calls + 1) // 2
    landline_calls = calls - mobile_calls
    groups = [CallerGroup("mobile", MOBILE_TRUNK, national_number("0811", 8),
                          rate=args.rate * (mobile_calls / calls), calls=mobile_calls, hold=hold)]
    if landline_calls:
        groups.append(CallerGroup("landline", LANDLINE_TRUNK, national_number("0254", 6),
                                  rate=args.rate * (landline_calls / calls),
                                  calls=landline_calls, hold=hold))
    codes = ["*201"] + [f"*3{(n % 12) + 1:02d}" for n in range(1, 8)]
    desk = DeskPlan(operators=args.operators, ring=args.ring, talk=args.talk, codes=codes,
                    agencies=("01", "02", "03", "04"))
    offering = calls / args.rate
    bound = args.max_seconds or offering + (hold or args.talk * calls / args.operators) + 60
    plan = LoadPlan("load", CallPath.DAEMON, groups, desk, max_seconds=bound)
    settings = _settings()
    refuse_other_pbx(args, settings)
    out = _reports_dir(args, settings, "load")
    overrides = {"SIAGA112_QUEUE__WRAPUP": f"{args.wrapup:g}"}

    async def main() -> int:
        from siaga112_testkit.loadtest.daemon import daemon_running
        from siaga112_testkit.loadtest.plot import plot_reports
        from siaga112_testkit.loadtest.report import render
        from siaga112_testkit.loadtest.runner import (
            RunContext,
            local_pbx_pid,
            local_service_pids,
            run_load,
        )

        local = not args.i_know_this_is_not_the_test_pbx  # else refused above
        async with daemon_running(settings, overrides, say) as daemon:
            names = list(settings.queue.operators)
            before = await set_operators(daemon.api, names, args.operators)
            try:
                ctx = RunContext(settings, args.pbx, out, say, api=daemon.api,
                                 progress_every=args.progress, daemon_log=daemon.logfile,
                                 pbx_pid=local_pbx_pid() if local else None,
                                 service_pids=local_service_pids() if local else {},
                                 daemon_pid=daemon.pid,
                                 extra_notes=[f"daemon settings: {daemon.settings_note}",
                                              capacity_note(args)])
                report = await run_load(plan, ctx)
            finally:
                await restore_operators(daemon.api, before)
        text = render(report)
        written = _write(out, "report", report.model_dump_json(indent=2), text)
        png = plot_reports([report], out / "report.png", "siaga112 load test")
        say(text)
        say(f"report: {', '.join(map(str, written))}, {png}")
        return 0 if report.clean else 1

    say(f"load test: {calls} calls at {args.rate:g}/s against {args.pbx}, "
        f"{args.operators} operators; bound {bound:.0f} s; reports in {out}")
    started = time.monotonic()
    with pbx_lock():
        rc = run_main(main())
    say(f"load test done in {time.monotonic() - started:.0f} s")
    return rc


def _bench(args: argparse.Namespace) -> int:
    from siaga112_testkit.loadtest.bench import BenchOptions, run_bench

    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not rates or any(r <= 0 for r in rates):
        raise SystemExit(f"--rates must be positive numbers, got {args.rates!r}")
    options = BenchOptions(
        remote=args.pbx, rates=rates, step_seconds=args.step_seconds, hold=args.hold,
        burst_calls=args.burst_calls, burst_rate=args.burst_rate,
        flood_seconds=args.flood_seconds, flood_rate=args.flood_rate,
        genuine_rate=args.genuine_rate,
        skip=frozenset(s.strip() for s in args.skip.split(",") if s.strip()),
    )
    settings = _settings()
    refuse_other_pbx(args, settings)
    out = _reports_dir(args, settings, "bench")
    say(f"bench: reports in {out}")
    with pbx_lock():
        return run_main(run_bench(settings, options, out, say))


def _waves(args: argparse.Namespace) -> int:
    from siaga112_testkit.loadtest.waves import WavePlan

    try:
        plan = WavePlan(waves=args.waves, size=args.size, rate=args.rate, hold=args.hold,
                        ring=args.ring)
    except ValueError as exc:
        raise SystemExit(f"siaga112-testkit waves: {exc}") from None
    settings = _settings()
    refuse_other_pbx(args, settings)
    out = _reports_dir(args, settings, "waves")

    async def main() -> int:
        from siaga112_testkit.loadtest.floor import FloorError
        from siaga112_testkit.loadtest.runner import RunContext, local_pbx_pid
        from siaga112_testkit.loadtest.waves import (
            render,
            waves_on_own_daemon,
            waves_on_the_floor,
        )

        local = not args.i_know_this_is_not_the_test_pbx  # else refused above
        ctx = RunContext(settings, args.pbx, out, say,
                         pbx_pid=local_pbx_pid() if local else None)
        try:
            measure = waves_on_the_floor if args.floor else waves_on_own_daemon
            report = await measure(settings, plan, ctx, profile=args.profile)
        # The daemon or the floor not ours, not started or gone; the desk not free.
        except (RuntimeError, FloorError) as exc:
            say(f"siaga112-testkit waves: NOT RUN: {exc}")
            return 1
        text = render(report, title="== waves on the ARI floor: the path from arrival to an "
                                    "operator ==", who="floor") if args.floor else render(report)
        written: list[Path] = list(_write(out, "waves", report.model_dump_json(indent=2), text))
        if report.profile:
            from siaga112_testkit import cpuprof

            folded = out / "waves.folded"
            folded.write_text("".join(f"{k} {v}\n" for k, v in report.profile.items()))
            svg = out / "waves.svg"
            svg.write_text(cpuprof.render_svg(report.profile, "daemon, arrival to an operator"))
            written += [folded, svg]
        say(text)
        say(f"report: {', '.join(map(str, written))}")
        return 0 if report.clean else 1

    say(f"waves: {plan.waves} of {plan.size} callers at {plan.rate:g}/s against {args.pbx}; "
        f"reports in {out}")
    with pbx_lock():
        return run_main(main())
