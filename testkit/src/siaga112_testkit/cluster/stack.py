"""The cluster topology on loopback (docs/cluster.md): Kamailio at 127.0.0.1:5060 in front of two
Asterisk nodes (127.0.0.11, 127.0.0.12), PostgreSQL and Mosquitto as the single stack runs them,
and two daemons, a (API 127.0.0.1:8112) and b (127.0.0.1:8113), one active and one standby.

The single stack's PBX binds 127.0.0.1:5060 too: the two cannot run together, and `up` refuses
while the single PBX or a `make up` daemon runs. Every process is started and stopped by its pid
file under state_dir/cluster/.

The daemons run `siaga112 run` with the stack's settings (var/siaga112.toml) and, through
SIAGA112_* variables, their own state dir, API port, HA node name and both nodes' ARI
(`ari.nodes`): the active daemon runs one queue and one desk over both nodes.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siaga112_testkit.cluster.nodes import Node
from siaga112_testkit.devstack import procs
from siaga112_testkit.devstack.mosquitto import MosquittoServer, ensure_mosquitto
from siaga112_testkit.devstack.pbx import Pbx
from siaga112_testkit.devstack.postgres import ensure_postgres, postgres_status
from siaga112_testkit.devstack.procs import say
from siaga112_testkit.devstack.stack import MQTT_PORT, PG_PORT, build_sounds

PROXY = ("127.0.0.1", 5060)
DAEMONS = {"a": 8112, "b": 8113}


@dataclass(frozen=True)
class Cluster:
    repo: Path
    state_dir: Path

    @property
    def dir(self) -> Path:
        return self.state_dir / "cluster"

    @property
    def pbx(self) -> Pbx:
        return Pbx(repo=self.repo, state_dir=self.state_dir)

    @property
    def nodes(self) -> list[Node]:
        return [Node("node1", "127.0.0.11", (10000, 14999), self.pbx),
                Node("node2", "127.0.0.12", (15000, 19999), self.pbx)]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # -- Kamailio ---------------------------------------------------------------------------

    @property
    def proxy_pidfile(self) -> Path:
        return self.dir / "kamailio.pid"

    @property
    def proxy_log(self) -> Path:
        return self.dir / "kamailio.log"

    def proxy_up(self) -> None:
        if procs.read_pid(self.proxy_pidfile) is not None:
            return
        procs.apt_install(["kamailio"])
        conf = self.repo / "asterisk-conf/kamailio"
        run = self.dir / "kamailio-run"
        run.mkdir(parents=True, exist_ok=True)
        if self.proxy_log.exists():  # each run's own log (the cluster test reads it)
            self.proxy_log.replace(self.proxy_log.with_suffix(".log.1"))
        say("starting Kamailio on 127.0.0.1:5060 (dispatcher over node1 and node2)")
        procs.spawn(["kamailio", "-f", str(conf / "kamailio.cfg"), "-DD", "-E", "-Y", str(run),
                     "-A", f'DISPATCHER_LIST="{conf / "dispatcher.list"}"'],
                    self.proxy_pidfile, self.proxy_log)
        if not _wait_udp_bound(PROXY, 10) or procs.read_pid(self.proxy_pidfile) is None:
            raise RuntimeError(f"Kamailio did not start; see {self.proxy_log}")

    # -- daemons ------------------------------------------------------------------------------

    def daemon_pidfile(self, name: str) -> Path:
        return self.dir / f"daemon-{name}.pid"

    def daemon_log(self, name: str) -> Path:
        return self.dir / f"daemon-{name}.log"

    def daemon_up(self, name: str) -> None:
        if procs.read_pid(self.daemon_pidfile(name)) is not None:
            return
        port = DAEMONS[name]
        env = dict(os.environ,
                   SIAGA112_CONFIG=str(self.state_dir / "siaga112.toml"),
                   SIAGA112_STATE_DIR=str(self.dir / f"daemon-{name}"),
                   SIAGA112_API__PORT=str(port),
                   SIAGA112_HA__ENABLED="true",
                   SIAGA112_HA__NODE=name,
                   SIAGA112_ARI__NODES=json.dumps(
                       [{"name": n.name, "url": n.ari_url} for n in self.nodes]))
        say(f"starting daemon {name} (API 127.0.0.1:{port})")
        procs.spawn([sys.executable, "-m", "siaga112.cli", "run"], self.daemon_pidfile(name),
                    self.daemon_log(name), env=env)
        procs.wait_port("127.0.0.1", port, 30, f"daemon {name} (log {self.daemon_log(name)})")

    # -- the whole ---------------------------------------------------------------------------

    def up(self, daemons: bool = True) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.pbx.running():
            raise RuntimeError("the single stack's test PBX runs on 127.0.0.1:5060, where the "
                               "cluster's proxy goes: stop it first (siaga112-testkit pbx down, "
                               "or make down)")
        pid = procs.read_pid(self.state_dir / "siaga112.pid")
        if pid is not None:
            raise RuntimeError(f"a `make up` daemon runs (pid {pid}): make down first")
        say("[1/4] PostgreSQL and Mosquitto")
        url = ensure_postgres(self.state_dir, PG_PORT)
        from siaga112.records.migrate import upgrade

        upgrade(url)
        ensure_mosquitto(self.state_dir, MQTT_PORT)
        say("[2/4] Asterisk nodes")
        build_sounds(self.repo)
        self.pbx.ensure_root()
        self.pbx.install_config()  # etc/asterisk: the base every node's config is made from
        for node in self.nodes:
            if not node.running():
                node.install_config()
            node.up()
        say("[3/4] Kamailio")
        self.proxy_up()
        if daemons:
            say("[4/4] daemons a and b")
            if not (self.state_dir / "siaga112.toml").exists():
                raise RuntimeError("no var/siaga112.toml: run `make stack` once first")
            for name in DAEMONS:
                self.daemon_up(name)
        say("cluster up")

    def down(self) -> None:
        """Daemons (standby first: the active one's stop would hand it the lead), proxy,
        nodes; PostgreSQL and Mosquitto stay (the single stack's too)."""
        for name in sorted(DAEMONS, key=lambda n: _role(DAEMONS[n]) == "active"):
            if procs.stop_pid(self.daemon_pidfile(name), timeout=15):
                say(f"daemon {name} stopped")
        if procs.stop_pid(self.proxy_pidfile, timeout=10):
            say("Kamailio stopped")
        for node in self.nodes:
            if node.down():
                say(f"Asterisk {node.name} stopped")

    def status(self) -> dict[str, Any]:
        pg = postgres_status(self.state_dir)
        mq = MosquittoServer(self.state_dir, MQTT_PORT)
        daemons = {}
        for name, port in DAEMONS.items():
            pid = procs.read_pid(self.daemon_pidfile(name))
            daemons[name] = {"pid": pid, "api": f"127.0.0.1:{port}",
                             "role": _role(port) if pid else None}
        active = [n for n, d in daemons.items() if d["role"] == "active"]
        return {
            "proxy": {"pid": procs.read_pid(self.proxy_pidfile), "sip": f"{PROXY[0]}:{PROXY[1]}"},
            "nodes": {n.name: {"pid": procs.read_pid(n.pidfile), "sip": n.sip,
                               "ari": f"{n.ip}:8088"} for n in self.nodes},
            "daemons": daemons,
            "active": active[0] if len(active) == 1 else None,
            "postgres": {"pid": pg.pid if pg.running else None},
            "mosquitto": {"pid": mq.pid if mq.running else None},
        }


def _role(port: int) -> str | None:
    """What the daemon's /health says it is (None: it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return str(json.load(resp).get("role"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait_udp_bound(addr: tuple[str, int], timeout: float) -> bool:
    """Until something has bound this UDP address (a bind of our own fails), or timeout."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(addr)
            except OSError:
                return True
        time.sleep(0.1)
    return False


def print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return

    def up(pid: int | None) -> str:
        return f"up (pid {pid})" if pid else "down"

    print(f"Kamailio {status['proxy']['sip']}: {up(status['proxy']['pid'])}")
    for name, node in status["nodes"].items():
        print(f"Asterisk {name} SIP {node['sip']}, ARI {node['ari']}: {up(node['pid'])}")
    for name, d in status["daemons"].items():
        role = f", {d['role']}" if d["role"] else ""
        print(f"daemon {name} API {d['api']}: {up(d['pid'])}{role}")
    print(f"PostgreSQL: {up(status['postgres']['pid'])}")
    print(f"Mosquitto: {up(status['mosquitto']['pid'])}")
    print(f"active daemon: {status['active'] or 'none'}")
