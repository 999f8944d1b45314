"""A throwaway PostgreSQL cluster for development and tests, run by the project (not the
system service): data in ``state_dir/pg``, trust auth on 127.0.0.1 only, no Unix socket,
fsync off. Started as the ``postgres`` system user when we are root (initdb refuses root).

``ensure_postgres`` is idempotent and returns quickly when the cluster is already up;
``stop_postgres`` / ``start_postgres`` let tests take the database away mid-stream.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from siaga112.devstack.procs import apt_install, pid_alive, port_open, read_pid, say

HOST = "127.0.0.1"
ROLE = "siaga112"
DATABASE = "siaga112"
_PIDFILE = "postgres.pid"
_LOGFILE = "postgres.log"
_PORTFILE = "postgres.port"
_RUN_AS = "postgres"


@dataclass(frozen=True)
class PostgresStatus:
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb, or None."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def database_url(port: int, database: str = DATABASE) -> str:
    return f"postgresql+asyncpg://{ROLE}@{HOST}:{port}/{database}"


def ensure_postgres(state_dir: Path, port: int = 5432) -> str:
    """Install, initialise and start the dev cluster as needed; create role and database
    ``siaga112``; return its SQLAlchemy URL."""
    bins = bin_dir()
    if bins is None:
        apt_install(["postgresql"])
        bins = bin_dir()
        if bins is None:
            raise RuntimeError("postgresql installed but no /usr/lib/postgresql/*/bin/initdb found")
    data = _data_dir(state_dir)
    if not (data / "PG_VERSION").exists():
        _initdb(bins, state_dir)
    start_postgres(state_dir, port)
    _ensure_role_and_db(bins, port)
    return database_url(port)


def start_postgres(state_dir: Path, port: int = 5432) -> int:
    """Start the cluster if it is not running and wait until it accepts connections."""
    status = postgres_status(state_dir)
    if status.running:
        if status.port != port:
            raise RuntimeError(
                f"dev PostgreSQL in {state_dir} already runs on port {status.port}, not {port}"
            )
        assert status.pid is not None
        return status.pid
    if port_open(HOST, port):
        raise RuntimeError(f"port {HOST}:{port} is taken by another server; pick another port")
    bins = _require_bins()
    data = _data_dir(state_dir)
    (data / "siaga112.conf").write_text(_server_conf(port))
    _chown(data / "siaga112.conf")
    logfile = state_dir / _LOGFILE
    logfile.touch()
    _chown(logfile)
    say(f"starting dev PostgreSQL on {HOST}:{port} ({data})")
    _run_as_owner(
        [str(bins / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "60", "start"],
        what="pg_ctl start",
        logfile=logfile,
    )
    pid = _postmaster_pid(data)
    if pid is None:
        raise RuntimeError(f"pg_ctl started, but {data}/postmaster.pid names no live process")
    (state_dir / _PIDFILE).write_text(f"{pid}\n")
    (state_dir / _PORTFILE).write_text(f"{port}\n")
    _wait_ready(bins, port)
    return pid


def stop_postgres(state_dir: Path) -> bool:
    """Fast shutdown by the cluster's pid file. True if it was running."""
    status = postgres_status(state_dir)
    if not status.running:
        (state_dir / _PIDFILE).unlink(missing_ok=True)
        return False
    bins = _require_bins()
    _run_as_owner(
        [str(bins / "pg_ctl"), "-D", str(status.data_dir), "-m", "fast", "-w", "-t", "60", "stop"],
        what="pg_ctl stop",
        logfile=state_dir / _LOGFILE,
    )
    (state_dir / _PIDFILE).unlink(missing_ok=True)
    return True


def postgres_status(state_dir: Path) -> PostgresStatus:
    data = _data_dir(state_dir)
    pid = read_pid(state_dir / _PIDFILE) or _postmaster_pid(data)
    port: int | None = None
    try:
        port = int((state_dir / _PORTFILE).read_text().strip())
    except (OSError, ValueError):
        pass
    return PostgresStatus(running=pid is not None, pid=pid, port=port, data_dir=data)


def _postmaster_pid(data: Path) -> int | None:
    """The pid in the cluster's own postmaster.pid (first line), when that process lives."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _data_dir(state_dir: Path) -> Path:
    return state_dir / "pg"


def _require_bins() -> Path:
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("no PostgreSQL in /usr/lib/postgresql/*/bin; run ensure_postgres")
    return bins


def _server_conf(port: int) -> str:
    return "\n".join(
        [
            "# Written by siaga112.devstack.postgres at each start: dev cluster, not production.",
            f"port = {port}",
            f"listen_addresses = '{HOST}'",
            "unix_socket_directories = ''",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 32MB",
            "max_connections = 100",
            "log_min_messages = warning",
            "",
        ]
    )


def _initdb(bins: Path, state_dir: Path) -> None:
    data = _data_dir(state_dir)
    say(f"initialising dev PostgreSQL cluster in {data}")
    state_dir.mkdir(parents=True, exist_ok=True)
    if data.exists():
        shutil.rmtree(data)  # a half-made cluster from an interrupted initdb
    data.mkdir(mode=0o700)
    _chown(data)
    _run_as_owner(
        [
            str(bins / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ],
        what="initdb",
    )
    (data / "pg_hba.conf").write_text(
        "# Dev cluster: trust on loopback TCP only, no Unix socket.\n"
        "host all all 127.0.0.1/32 trust\n"
    )
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\ninclude_if_exists = 'siaga112.conf'\n")


def _is_root() -> bool:
    return os.geteuid() == 0


def _chown(path: Path) -> None:
    if _is_root():
        pw = pwd.getpwnam(_RUN_AS)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _run_as_owner(argv: Sequence[str], what: str, logfile: Path | None = None) -> None:
    cmd = ["runuser", "-u", _RUN_AS, "--", *argv] if _is_root() else list(argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        tail = ""
        if logfile is not None and logfile.exists():
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(
            f"{what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            + (f"\n--- {logfile} ---\n{tail}" if tail else "")
        )


def _psql(bins: Path, port: int, sql: str, database: str = "postgres") -> str:
    proc = subprocess.run(
        [str(bins / "psql"), "-h", HOST, "-p", str(port), "-U", "postgres", "-d", database]
        + ["-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql on {HOST}:{port} failed: {proc.stderr.strip()} (sql: {sql})")
    return proc.stdout.strip()


def _wait_ready(bins: Path, port: int) -> None:
    proc = subprocess.run(
        [str(bins / "pg_isready"), "-h", HOST, "-p", str(port), "-t", "30"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dev PostgreSQL on {HOST}:{port} not ready: {proc.stdout.strip()}")


def _ensure_role_and_db(bins: Path, port: int) -> None:
    # ROLE and DATABASE are both "siaga112" (literal here: no SQL is built from strings).
    if _psql(bins, port, "SELECT 1 FROM pg_roles WHERE rolname = 'siaga112'") != "1":
        _psql(bins, port, "CREATE ROLE siaga112 LOGIN CREATEDB")
    if _psql(bins, port, "SELECT 1 FROM pg_database WHERE datname = 'siaga112'") != "1":
        _psql(bins, port, "CREATE DATABASE siaga112 OWNER siaga112")
