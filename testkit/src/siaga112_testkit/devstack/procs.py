"""The local stack's process helpers: the product's pid files, spawning and ports
(siaga112.procs, re-exported here) and what only the kit does: install Debian packages, say
what set-up is doing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from siaga112.procs import (
    LOG_MODE,
    UMASK,
    generated_secret,
    open_log,
    pid_alive,
    port_open,
    read_pid,
    remove_own_pidfile,
    same_process,
    spawn,
    start_epoch,
    start_ticks,
    stop_pid,
    wait_port,
    write_pidfile,
    write_private,
)

__all__ = [
    "LOG_MODE", "UMASK", "apt_install", "generated_secret", "open_log", "pid_alive", "port_open",
    "read_pid", "remove_own_pidfile", "same_process", "say", "spawn", "start_epoch",
    "start_ticks", "stop_pid", "wait_port", "write_pidfile", "write_private",
]


def say(msg: str) -> None:
    """Progress for a person watching first-time set-up."""
    print(f"[siaga112] {msg}", file=sys.stderr, flush=True)


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages that are missing. Idempotent; says what it does."""
    missing = [
        p
        for p in packages
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout.strip()
        != "install ok installed"
    ]
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )
