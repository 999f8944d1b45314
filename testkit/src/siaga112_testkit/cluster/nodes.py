"""The cluster's Asterisk nodes: two Asterisk processes from the test PBX's cached chroot, each
with its own configuration (etc/asterisk-<node>), control socket, astdb and logs, on its own
loopback address (SIP 127.0.0.1N:5060, ARI 127.0.0.1N:8088) and RTP port range.

A node's configuration is the project's own (asterisk-conf/, dialplan/, installed by the single
test PBX's `install_config`) with the few lines a node behind Kamailio changes, each checked to
be there (a config that moved on fails here, loudly, not in a call):

- the SIP transport and the HTTP server bind the node's address;
- every endpoint is identified by the header Kamailio adds, X-Siaga112-Source: the address the
  request came from (Kamailio, not the party, is the source the node sees). The identify
  sections' `match = ADDRESS` become `match_header = X-Siaga112-Source: ADDRESS`;
- `rewrite_contact = no`: a party's Contact stays its own, in-dialog requests follow the Route
  set Kamailio recorded;
- the directories of what a process holds for itself (astrundir, astdbdir, astlogdir);
- `systemname = <node>`: the node's name starts every call id (the daemon routes by it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from siaga112_testkit.devstack import procs
from siaga112_testkit.devstack.pbx import Pbx, stop_asterisk, wait_booted
from siaga112_testkit.devstack.procs import say

SOURCE_HEADER = "X-Siaga112-Source"


@dataclass(frozen=True)
class Node:
    name: str  # "node1"
    ip: str  # "127.0.0.11"
    rtp: tuple[int, int]
    pbx: Pbx  # the single test PBX: its root, ARI password and base configuration

    @property
    def root(self) -> Path:
        return self.pbx.root

    @property
    def etc(self) -> str:
        return f"/etc/asterisk-{self.name}"  # inside the root

    @property
    def conf(self) -> str:
        return f"{self.etc}/asterisk.conf"

    @property
    def pidfile(self) -> Path:
        return self.pbx.state_dir / "cluster" / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.pbx.state_dir / "cluster" / f"{self.name}.log"

    @property
    def ari_url(self) -> str:
        return f"http://{self.ip}:8088/ari"

    @property
    def sip(self) -> str:
        return f"{self.ip}:5060"

    def cli(self, command: str, timeout: float = 15) -> str:
        out = subprocess.run(
            ["chroot", str(self.root), "asterisk", "-C", self.conf, "-rx", command],
            capture_output=True, text=True, timeout=timeout,
        )
        return out.stdout

    def running(self) -> bool:
        return procs.read_pid(self.pidfile) is not None

    # -- configuration -------------------------------------------------------------------

    def install_config(self) -> None:
        """etc/asterisk (the single PBX's, just installed) -> etc/asterisk-<node>, adapted."""
        src = self.root / "etc/asterisk"
        dest = self.root / self.etc.lstrip("/")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src, dest)
        for sub in (f"run/asterisk-{self.name}", f"var/lib/asterisk/{self.name}",
                    f"var/log/asterisk/{self.name}"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        _edit(dest / "asterisk.conf", [
            (r"^astetcdir => /etc/asterisk$", f"astetcdir => {self.etc}", 1),
            (r"^astdbdir => /var/lib/asterisk$", f"astdbdir => /var/lib/asterisk/{self.name}", 1),
            (r"^astrundir => /run/asterisk$", f"astrundir => /run/asterisk-{self.name}", 1),
            (r"^astlogdir => /var/log/asterisk$",
             f"astlogdir => /var/log/asterisk/{self.name}", 1),
            # The node's name starts every uniqueid ("node1-1764500000.12"): no two nodes'
            # call ids clash, and the daemon knows which node a call is on (ari/cluster.py).
            (r"^\[options\]$", f"[options]\nsystemname = {self.name}", 1),
        ])
        _edit(dest / "http.conf", [(r"^bindaddr = 127\.0\.0\.1\b", f"bindaddr = {self.ip}", 1)])
        _edit(dest / "rtp.conf", [
            (r"^rtpstart = \d+", f"rtpstart = {self.rtp[0]}", 1),
            (r"^rtpend = \d+", f"rtpend = {self.rtp[1]}", 1),
        ])
        _edit(dest / "pjsip.conf", [
            (r"^bind = 127\.0\.0\.1:5060\b", f"bind = {self.sip}", 1),
            (r"^endpoint_identifier_order = ip,", "endpoint_identifier_order = header,", 1),
            (r"^identify_by = ip\b", "identify_by = header", 1),
            (r"^rewrite_contact = yes\b", "rewrite_contact = no", 1),
            (r"^match = (\S+)", rf"match_header = {SOURCE_HEADER}: \1", None),
        ])
        testkit_pjsip = dest / "pjsip_testkit.conf"
        if testkit_pjsip.exists():
            _edit(testkit_pjsip, [(r"^match = (\S+)", rf"match_header = {SOURCE_HEADER}: \1",
                                   None)])

    # -- running ---------------------------------------------------------------------------

    def up(self, timeout: float = 60) -> None:
        if self.running():
            return
        if procs.port_open(self.ip, 8088):
            raise RuntimeError(f"something not started by the cluster listens on {self.ip}:8088")
        say(f"starting Asterisk {self.name}: SIP {self.sip}, ARI {self.ip}:8088")
        procs.spawn(["chroot", str(self.root), "asterisk", "-f", "-C", self.conf],
                    self.pidfile, self.log)
        procs.wait_port(self.ip, 8088, timeout, f"Asterisk {self.name} ARI")
        wait_booted(self.cli, self.running, timeout, self.log)

    def down(self) -> bool:
        return stop_asterisk(self.cli, self.pidfile)


def _edit(path: Path, rules: list[tuple[str, str, int | None]]) -> None:
    """Each (pattern, replacement, count) must match `count` lines (None: at least one)."""
    text = path.read_text()
    for pattern, repl, count in rules:
        text, n = re.subn(pattern, repl, text, flags=re.MULTILINE)
        if (count is None and n == 0) or (count is not None and n != count):
            raise RuntimeError(f"{path.name}: expected {count or 'some'} line(s) matching "
                               f"{pattern!r} to adapt for a cluster node, found {n}")
    path.write_text(text)
