"""`siaga112-testkit`: the local stack (test PBX, PostgreSQL, Mosquitto), the load test and
the bench, and the pcaps the SIPp phones play. The product's own command is `siaga112`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from siaga112.cli import run_command


def _state_dir(args: argparse.Namespace) -> Path:
    from siaga112_testkit.checkout import repo_root

    return Path(args.state_dir).resolve() if args.state_dir else repo_root() / "var"


def _pbx(args: argparse.Namespace) -> int:
    from siaga112_testkit.checkout import repo_root
    from siaga112_testkit.devstack.pbx import Pbx
    from siaga112_testkit.devstack.stack import build_sounds

    pbx = Pbx(repo=repo_root(), state_dir=_state_dir(args))
    if args.action == "up":
        build_sounds(repo_root())
        pbx.up()
    elif args.action == "down":
        pbx.down()
    print(pbx.status())
    return 0


def _stack(args: argparse.Namespace) -> int:
    from siaga112_testkit.checkout import repo_root
    from siaga112_testkit.devstack import stack

    repo, state = repo_root(), _state_dir(args)
    if args.action == "up":
        stack.up(repo, state)
        return 0
    if args.action == "down":
        stack.down(repo, state)
        return 0
    return stack.status(repo, state)


def _cluster(args: argparse.Namespace) -> int:
    from siaga112_testkit.checkout import repo_root
    from siaga112_testkit.cluster.stack import Cluster, print_status

    cluster = Cluster(repo=repo_root(), state_dir=_state_dir(args))
    if args.action == "up":
        cluster.up(daemons=not args.no_daemons)
    elif args.action == "down":
        cluster.down()
    else:
        print_status(cluster.status(), args.json)
    return 0


def _pcap(args: argparse.Namespace) -> int:
    from siaga112_testkit import dtmf_pcap

    return dtmf_pcap.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siaga112-testkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="the whole local stack: PBX, PostgreSQL, Mosquitto")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir")
    p.set_defaults(func=_stack)

    p = sub.add_parser("pbx", help="the test PBX (Asterisk 22 on loopback)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir")
    p.set_defaults(func=_pbx)

    p = sub.add_parser("cluster", help="the cluster on loopback: Kamailio, two Asterisk nodes, "
                                       "daemons a and b (docs/cluster.md)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--json", action="store_true", help="status: every process's pid, which "
                                                       "daemon is active")
    p.add_argument("--no-daemons", action="store_true", help="up: proxy and nodes only")
    p.add_argument("--state-dir")
    p.set_defaults(func=_cluster)

    p = sub.add_parser("pcap", help="write the RTP pcaps the SIPp phones play: OUTDIR "
                                    "[--code CODE] [--seconds N] (see pcap OUTDIR --help)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_pcap)

    from siaga112_testkit.loadtest import cli as loadtest_cli

    loadtest_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
