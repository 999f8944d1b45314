"""The `siaga112` command line: the daemon, the schema, the local stack, and the records."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from pydantic import ValidationError


def _settings():  # noqa: ANN202 - imported late so `--help` works without a config
    from siaga112.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        print(f"siaga112: bad settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _run(args: argparse.Namespace) -> int:
    from siaga112 import logs
    from siaga112.app import Daemon

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    pidfile = settings.state_dir / "siaga112.pid"
    pidfile.write_text(f"{os.getpid()}\n")

    async def main() -> None:
        daemon = Daemon(settings)
        daemon.install_signal_handlers()
        await daemon.run()

    try:
        asyncio.run(main())
    finally:
        pidfile.unlink(missing_ok=True)
    return 0


def _start(args: argparse.Namespace) -> int:
    """The daemon in the background, stopped again by `stack down` (by its pid)."""
    from siaga112.devstack import procs

    settings = _settings()
    pidfile = settings.state_dir / "siaga112.pid"
    pid = procs.read_pid(pidfile)
    if pid is not None:
        print(f"siaga112 daemon already running (pid {pid})")
        return 0
    log = settings.state_dir / "siaga112.log"
    pid = procs.spawn([sys.executable, "-m", "siaga112.cli", "run"], pidfile, log)
    procs.wait_port(settings.api.host, settings.api.port, 30, f"the daemon (log: {log})")
    print(f"siaga112 daemon up (pid {pid}), API on http://{settings.api.host}:{settings.api.port},"
          f" log {log}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from siaga112.records.migrate import downgrade, upgrade

    url = args.url or _settings().database.url
    if args.downgrade:
        downgrade(url, args.downgrade)
    else:
        upgrade(url, args.revision)
    return 0


def _state_dir(args: argparse.Namespace) -> Path:
    from siaga112.devstack.stack import repo_root

    return Path(args.state_dir).resolve() if args.state_dir else repo_root() / "var"


def _pbx(args: argparse.Namespace) -> int:
    from siaga112.devstack.pbx import Pbx
    from siaga112.devstack.stack import build_sounds, repo_root

    pbx = Pbx(repo=repo_root(), state_dir=_state_dir(args))
    if args.action == "up":
        build_sounds(repo_root())
        pbx.up()
    elif args.action == "down":
        pbx.down()
    print(pbx.status())
    return 0


def _stack(args: argparse.Namespace) -> int:
    from siaga112.devstack import stack

    repo, state = stack.repo_root(), _state_dir(args)
    if args.action == "up":
        stack.up(repo, state)
        return 0
    if args.action == "down":
        stack.down(repo, state)
        return 0
    return stack.status(repo, state)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siaga112", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.set_defaults(func=_run)

    p = sub.add_parser("start", help="run the daemon in the background (pid in state_dir)")
    p.set_defaults(func=_start)

    p = sub.add_parser("migrate", help="upgrade (or downgrade) the database schema")
    p.add_argument("--url", help="database URL (default: from settings)")
    p.add_argument("--revision", default="head")
    p.add_argument("--downgrade", metavar="REV", help="downgrade to this revision instead")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("pbx", help="the test PBX (Asterisk 22 on loopback)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir")
    p.set_defaults(func=_pbx)

    p = sub.add_parser("stack", help="the whole local stack: PBX, PostgreSQL, Mosquitto")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir")
    p.set_defaults(func=_stack)

    from siaga112.records import cli as records_cli

    records_cli.register(sub)

    from siaga112.loadtest import cli as loadtest_cli

    loadtest_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input the command could not use: say which, no traceback
        parser.exit(2, f"siaga112 {args.command}: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
