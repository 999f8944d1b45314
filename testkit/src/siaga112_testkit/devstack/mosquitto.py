"""Mosquitto for development and tests: installed when missing, started on loopback by its pid.

Files live in ``STATE_DIR/mosquitto/``: ``mosquitto.conf`` (written here), ``mosquitto.pid`` and
``mosquitto.log``. The broker accepts anonymous clients on 127.0.0.1 only and keeps nothing on
disk (persistence off): it is a dev/test broker, not a production one.

Debian's ``mosquitto`` package starts a system broker on 1883 where an init system runs it. That
broker is not ours: we say so and stop, and never kill a process we did not start.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import structlog

from siaga112_testkit.devstack import procs

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 10.0

CONFIG_TEMPLATE = """\
# Siaga112 dev/test broker, written by siaga112_testkit.devstack.mosquitto; edits are overwritten.
# SECURITY: anonymous clients are allowed. It listens on loopback only; never expose it.
listener {port} {host}
allow_anonymous true
# Nothing kept on disk between runs: retained state is rebuilt by the daemon on connect.
persistence false
# Log to stderr, which procs.spawn sends to mosquitto.log beside this file (not /var/log).
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
# Send every packet at once (no Nagle): a QoS 1 publisher with PUBACKs outstanding otherwise
# waits for the client's delayed ACK, 40 ms a round, which held the daemon to about 500
# messages a second (docs/mqtt.md, "The broker").
set_tcp_nodelay true
"""


class ForeignBrokerError(RuntimeError):
    """Something we did not start listens on the broker's port."""


@dataclass(frozen=True)
class MosquittoServer:
    """One dev broker: its files under state_dir/mosquitto and its loopback port."""

    state_dir: Path
    port: int = 1883
    host: str = HOST

    @property
    def directory(self) -> Path:
        return self.state_dir / "mosquitto"

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def pidfile(self) -> Path:
        return self.directory / "mosquitto.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def pid(self) -> int | None:
        return procs.read_pid(self.pidfile)

    @property
    def running(self) -> bool:
        return self.pid is not None and procs.port_open(self.host, self.port)

    def start(self) -> int:
        """Start our broker unless it already runs; return its pid."""
        pid = self.pid
        if pid is not None and procs.port_open(self.host, self.port):
            return pid
        if pid is None and procs.port_open(self.host, self.port):
            raise ForeignBrokerError(_foreign_message(self.host, self.port, self.pidfile))
        if pid is not None:  # ours, alive but not listening: a stuck start; begin again
            procs.stop_pid(self.pidfile)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONFIG_TEMPLATE.format(port=self.port, host=self.host))
        with warnings.catch_warnings():
            # spawn drops its Popen on purpose (the broker outlives us, we stop it by pid);
            # Popen.__del__ then warns "still running", an error under pytest's -W error.
            warnings.simplefilter("ignore", ResourceWarning)
            pid = procs.spawn(["mosquitto", "-c", str(self.conf)], self.pidfile, self.logfile)
        try:
            procs.wait_port(self.host, self.port, START_TIMEOUT, "mosquitto")
        except RuntimeError as exc:
            procs.stop_pid(self.pidfile)
            raise RuntimeError(
                f"{exc}; last lines of {self.logfile}:\n{_tail(self.logfile)}"
            ) from exc
        log.info("mosquitto_started", pid=pid, port=self.port, conf=str(self.conf))
        return pid

    def stop(self) -> bool:
        """Stop our broker by its pid; True if it was running."""
        was_up = procs.stop_pid(self.pidfile)
        if was_up:
            log.info("mosquitto_stopped", port=self.port)
        return was_up


def ensure_mosquitto(state_dir: Path, port: int = 1883) -> MosquittoServer:
    """Install Debian's mosquitto when missing and make sure our broker listens on port."""
    procs.apt_install(["mosquitto"])
    server = MosquittoServer(Path(state_dir), port)
    server.start()
    return server


def stop_mosquitto(state_dir: Path, port: int = 1883) -> bool:
    """Stop the broker started by ensure_mosquitto(state_dir) by its pid file."""
    return MosquittoServer(Path(state_dir), port).stop()


def _foreign_message(host: str, port: int, pidfile: Path) -> str:
    owner = _listener_process(port)
    who = f"process {owner[0]} ({owner[1]})" if owner else "a process we cannot see"
    hint = (
        "It looks like Debian's system mosquitto, started when the package was installed: "
        "stop it with `systemctl disable --now mosquitto` (or `service mosquitto stop`), or "
        if owner is None or owner[1] == "mosquitto"
        else "Stop it, or "
    )
    return (
        f"{host}:{port} is taken by {who}, not by the broker whose pid file is {pidfile}. "
        f"{hint}give the dev stack another port. We do not kill processes we did not start."
    )


def _listener_process(port: int) -> tuple[int, str] | None:
    """The (pid, command name) listening on TCP port, from /proc; None when not visible."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            for fd in (proc_dir / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(proc_dir.name), (proc_dir / "comm").read_text().strip()
        except OSError:
            continue
    return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
