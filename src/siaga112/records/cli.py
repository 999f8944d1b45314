"""Command line for records: ``blocklist add|remove|list``, ``calls list|mark``,
``referrals export``, ``complaints file|answer|list``. The main ``siaga112`` CLI calls
``register(subparsers)``; each command sets ``args.func(args) -> int``. The database URL
comes from Settings()."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.model import Disposition
from siaga112.records.engine import connect_args
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.settings import SettingsError, config_file, load

Handler = Callable[[argparse.Namespace, Repository, BlockPolicy], Awaitable[int]]


def register(subparsers: argparse._SubParsersAction) -> None:
    bl = subparsers.add_parser("blocklist", help="blocked numbers").add_subparsers(
        dest="blocklist_cmd", required=True
    )
    p = bl.add_parser("add", help="block a number (E.164)")
    p.add_argument("number")
    p.add_argument("--hours", type=float, default=None, help="default: until removed")
    p.add_argument("--reason", default="manual")
    p.add_argument("--by", default="cli")
    p.set_defaults(func=_runner(_blocklist_add))
    p = bl.add_parser("remove", help="unblock a number")
    p.add_argument("number")
    p.add_argument("--reason", default="manual")
    p.add_argument("--by", default="cli")
    p.set_defaults(func=_runner(_blocklist_remove))
    p = bl.add_parser("list", help="blocked numbers (active only unless --all)")
    p.add_argument("--all", action="store_true", help="also expired and removed blocks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner(_blocklist_list))

    cl = subparsers.add_parser("calls", help="call records").add_subparsers(
        dest="calls_cmd", required=True
    )
    p = cl.add_parser("list", help="calls, newest first")
    p.add_argument("--since", type=datetime.fromisoformat)
    p.add_argument("--until", type=datetime.fromisoformat)
    p.add_argument("--caller")
    p.add_argument("--disposition", choices=[d.value for d in Disposition])
    p.add_argument("--operator", help="calls this operator was connected to")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner(_calls_list))
    p = cl.add_parser("mark", help="mark a call's disposition and/or category after the call")
    p.add_argument("call_id")
    p.add_argument("--disposition", choices=[d.value for d in Disposition])
    p.add_argument("--category", help='category code "01".."12"')
    p.add_argument("--by", required=True, help="who marks (operator or supervisor name)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner(_calls_mark))

    rf = subparsers.add_parser("referrals", help="numbers referred to the ministry")
    rf_sub = rf.add_subparsers(dest="referrals_cmd", required=True)
    p = rf_sub.add_parser("export", help="write referrals to stdout and mark them exported")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("--all", action="store_true", help="also those exported before")
    p.set_defaults(func=_runner(_referrals_export))

    cp = subparsers.add_parser("complaints", help="complaints (answered within 3x24 hours)")
    cp_sub = cp.add_subparsers(dest="complaints_cmd", required=True)
    p = cp_sub.add_parser("file", help="take a complaint down")
    p.add_argument("--caller", required=True, help="who complains (number or name)")
    p.add_argument("--text", required=True)
    p.add_argument("--by", required=True, help="who takes it down")
    p.add_argument("--call-id", help="the call complained about")
    p.add_argument(
        "--filed-at", type=datetime.fromisoformat, help="when it was received (default now)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner(_complaints_file))
    p = cp_sub.add_parser("answer", help="record the answer to a complaint")
    p.add_argument("id", type=int)
    p.add_argument("--answer", required=True)
    p.add_argument("--by", required=True, help="who answered")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner(_complaints_answer))
    p = cp_sub.add_parser("list", help="complaints, oldest first")
    p.add_argument("--open", action="store_true", help="only those not answered yet")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner(_complaints_list))


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m siaga112.records.cli``)."""
    parser = argparse.ArgumentParser(prog="siaga112-records")
    register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _runner(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return asyncio.run(_with_repo(handler, args))

    return run


async def _with_repo(handler: Handler, args: argparse.Namespace) -> int:
    try:
        settings = load()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = create_async_engine(
        settings.database.url, connect_args=connect_args(settings.database.statement_timeout)
    )
    try:
        policy = BlockPolicy(engine, settings.policy)
        return await handler(args, Repository(engine, policy), policy)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, DBAPIError, TimeoutError) as exc:
        # No traceback for an unreachable or refusing database: say which and why.
        where = make_url(settings.database.url).render_as_string(hide_password=True)
        cause = getattr(exc, "orig", None) or exc
        print(f"error: the records database {where} cannot be used: "
              f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}\n"
              f"(settings file: {config_file()}; set SIAGA112_CONFIG or database.url)",
              file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


def _print_rows(rows: Sequence[BaseModel], as_json: bool, columns: Sequence[str]) -> None:
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    dumped = [r.model_dump(mode="json") for r in rows]
    print("\t".join(columns))
    for row in dumped:
        print("\t".join(_cell(row.get(c)) for c in columns))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


async def _blocklist_add(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    entry = await policy.block(args.number, args.hours, args.reason, args.by)
    print(f"blocked {entry.number} until {entry.blocked_until or 'removed'}")
    return 0


async def _blocklist_remove(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    if await policy.unblock(args.number, args.reason, args.by):
        print(f"unblocked {args.number}")
        return 0
    print(f"{args.number} was not blocked", file=sys.stderr)
    return 1


async def _blocklist_list(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    rows = await repo.list_blocks(include_expired=args.all)
    cols = ["number", "blocked_until", "reason", "by", "created_at", "active"]
    _print_rows(rows, args.json, cols)
    return 0


async def _calls_list(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    rows = await repo.list_calls(
        since=args.since,
        until=args.until,
        caller=args.caller,
        disposition=args.disposition,
        operator=args.operator,
        limit=args.limit,
        offset=args.offset,
    )
    cols = [
        "call_id",
        "arrived_at",
        "caller",
        "operator",
        "disposition",
        "category",
        "wait_seconds",
    ]
    _print_rows(rows, args.json, cols)
    return 0


async def _calls_mark(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    call = await repo.mark_call(
        args.call_id, by=args.by, disposition=args.disposition, category=args.category
    )
    _print_rows([call], args.json, ["call_id", "caller", "disposition", "category"])
    return 0


async def _referrals_export(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    rows = await repo.referrals(only_new=not args.all)
    dumped = [r.model_dump(mode="json") for r in rows]
    if args.format == "json":
        print(json.dumps(dumped, indent=2))
    else:
        cols = ["number", "count", "first_at", "last_at", "referred_at", "exported_at"]
        writer = csv.DictWriter(sys.stdout, fieldnames=cols)
        writer.writeheader()
        writer.writerows(dumped)
    await repo.mark_exported([r.number for r in rows])
    return 0


_COMPLAINT_COLUMNS = ["id", "filed_at", "caller", "call_id", "answered_at", "overdue_at", "text"]


async def _complaints_file(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    c = await repo.file_complaint(
        args.caller, args.text, args.by, call_id=args.call_id, filed_at=args.filed_at
    )
    _print_rows([c], args.json, _COMPLAINT_COLUMNS)
    return 0


async def _complaints_answer(
    args: argparse.Namespace, repo: Repository, policy: BlockPolicy
) -> int:
    c = await repo.answer_complaint(args.id, args.answer, args.by)
    _print_rows([c], args.json, _COMPLAINT_COLUMNS)
    return 0


async def _complaints_list(args: argparse.Namespace, repo: Repository, policy: BlockPolicy) -> int:
    _print_rows(await repo.list_complaints(open_only=args.open), args.json, _COMPLAINT_COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
