"""The `siaga112` command line, for operators and ops: the daemon, the schema and the
records. The local stack, the load test and the bench are the test kit's (`siaga112-testkit`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from collections.abc import Callable

# Files the daemon and the stack write (journal, logs, recordings' notes) hold callers'
# numbers: 0640 at most, directories 0750. Token files are written 0600 on their own.
UMASK = 0o027


def _settings():  # noqa: ANN202 - imported late so `--help` works without a config
    from siaga112.settings import SettingsError, load

    try:
        return load()
    except SettingsError as exc:
        print(f"siaga112: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _daemon_settings(args: argparse.Namespace):  # noqa: ANN202
    """The settings the daemon may start with, or exit 2 saying every refusal (no values)."""
    from siaga112.settings import SettingsError, load_for_daemon

    try:
        return load_for_daemon(defaults=args.defaults)
    except SettingsError as exc:
        print(f"siaga112: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# The cyclic collector's first threshold (CPython's default is 700 allocations). Measured with
# gc.callbacks over 20 s of 40 calls/s (800 calls): the defaults spent 0.19 s of 5.6 s of CPU
# collecting (510 young, 46 middle, 4 full collections); with the heap as imported frozen and
# these thresholds, 0.017 s (2 young). Garbage cycles live a little longer: RSS after the run
# 105 MB, against 92 and 108 MB in two runs with the defaults.
GC_THRESHOLDS = (20_000, 50, 100)


def _long_lived_heap() -> None:
    """What the imports made lives as long as the process: out of the collector's sight
    (gc.freeze), and collections far apart."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _run(args: argparse.Namespace) -> int:
    from siaga112 import logs, procs
    from siaga112.app import Daemon

    settings = _daemon_settings(args)
    logs.configure(settings.log_level, settings.log_format)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    pidfile = settings.state_dir / "siaga112.pid"
    procs.write_pidfile(pidfile, os.getpid())
    _long_lived_heap()

    async def main() -> int:
        daemon = Daemon(settings)
        daemon.install_signal_handlers()
        await daemon.run()
        return daemon.exit_code  # 3: another daemon took the lead (HA; run again as standby)

    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            return runner.run(main())
    finally:
        procs.remove_own_pidfile(pidfile)  # not a newer daemon's


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _start(args: argparse.Namespace) -> int:
    """The daemon in the background, stopped again by `siaga112 stop` (by its pid)."""
    from siaga112 import procs

    settings = _daemon_settings(args)  # refusals are said here, not only in the log
    pidfile = settings.state_dir / "siaga112.pid"
    pid = procs.read_pid(pidfile)
    if pid is not None:
        print(f"siaga112 daemon already running (pid {pid})")
        return 0
    if procs.port_open(settings.api.host, settings.api.port):
        print(f"siaga112: {settings.api.host}:{settings.api.port} is taken by a process not "
              f"named in {pidfile} (a daemon started otherwise?); not starting a second one",
              file=sys.stderr)
        return 1
    log = settings.state_dir / "siaga112.log"  # appended to, never truncated
    argv = [sys.executable, "-m", "siaga112.cli", "run", *(["--defaults"] if args.defaults else [])]
    pid = procs.spawn(argv, pidfile, log)
    procs.wait_port(settings.api.host, settings.api.port, 30, f"the daemon (log: {log})")
    print(f"siaga112 daemon up (pid {pid}), API on http://{settings.api.host}:{settings.api.port},"
          f" log {log}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    """Stop the daemon `start` left in the background, by its pid and start time (never by
    name): a process that took its pid since is left alone."""
    from siaga112 import procs

    pidfile = _settings().state_dir / "siaga112.pid"
    if procs.stop_pid(pidfile, timeout=15):
        print("siaga112 daemon stopped")
    else:
        print(f"siaga112 daemon was not running (no live process in {pidfile})")
    return 0


def _cluster(args: argparse.Namespace) -> int:
    """The cluster on loopback is the test kit's (it builds the test PBX's nodes and its proxy
    from the repository). The product never imports the kit: this runs its command,
    `siaga112-testkit cluster`, when it is installed beside this one."""
    import shutil
    import subprocess
    from pathlib import Path

    beside = Path(sys.executable).parent / "siaga112-testkit"
    kit = str(beside) if beside.exists() else shutil.which("siaga112-testkit")
    if kit is None:
        print("siaga112 cluster: the cluster on loopback comes with the test kit "
              "(pip install -e ./testkit, or make cluster); a production cluster is set up as "
              "docs/cluster.md says", file=sys.stderr)
        return 2
    argv = [kit, "cluster", args.action, *(["--json"] if args.json else []),
            *(["--no-daemons"] if args.no_daemons else [])]
    return subprocess.run(argv, check=False).returncode


def _migrate(args: argparse.Namespace) -> int:
    from siaga112.records.migrate import downgrade, upgrade

    url = args.url or _settings().database.url
    if args.downgrade:
        downgrade(url, args.downgrade)
    else:
        upgrade(url, args.revision)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siaga112", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    defaults_help = ("run without a settings file, on the defaults and SIAGA112_* environment "
                     "variables (refused otherwise)")
    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("--defaults", action="store_true", help=defaults_help)
    p.set_defaults(func=_run)

    p = sub.add_parser("start", help="run the daemon in the background (pid in state_dir)")
    p.add_argument("--defaults", action="store_true", help=defaults_help)
    p.set_defaults(func=_start)

    p = sub.add_parser("stop", help="stop the daemon `start` left in the background (by its pid)")
    p.set_defaults(func=_stop)

    p = sub.add_parser("cluster", help="the cluster on loopback (Kamailio, two Asterisk nodes, "
                                       "daemons a and b): the test kit's, docs/cluster.md")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.add_argument("--no-daemons", action="store_true", help="up: proxy and nodes only")
    p.set_defaults(func=_cluster)

    p = sub.add_parser("migrate", help="upgrade (or downgrade) the database schema")
    p.add_argument("--url", help="database URL (default: from settings)")
    p.add_argument("--revision", default="head")
    p.add_argument("--downgrade", metavar="REV", help="downgrade to this revision instead")
    p.set_defaults(func=_migrate)

    from siaga112.records import cli as records_cli

    records_cli.register(sub)

    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse and run one command, files made 0640/0750 (umask 027); bad input the command
    could not use exits 2 with one line naming it, no traceback. Shared with the test kit's
    command line."""
    os.umask(UMASK)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        parser.exit(2, f"{parser.prog} {args.command}: {exc}\n")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
