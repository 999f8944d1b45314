"""A throwaway PostgreSQL cluster for development and tests, run by the project (not the
system service): data in ``state_dir/pg``, fsync off. Started as the ``postgres`` system user
when we are root (initdb refuses root).

Who gets in (pg_hba.conf, rewritten at every start): on 127.0.0.1 only the project's role
``siaga112``, by password (scram-sha-256; generated once, ``state_dir/pg-password``, 0600; it is
in the dev settings' database URL); the ``postgres`` superuser only by peer on a Unix socket in
``state_dir/pg-socket`` (0700, the cluster owner's), for set-up. Nothing is trusted: a local
user cannot log in as a superuser (and so cannot run ``COPY ... TO PROGRAM``).

Two databases, both owned by the project's role: ``siaga112``, the records the operator's
daemon (``make run``) reads, and ``siaga112_test``, the test kit's (the test suite, ``siaga112
load-test`` and ``siaga112-testkit bench``), so that a test run never leaves a call in the
operator's list.

``ensure_postgres`` is idempotent and returns quickly when the cluster is already up;
``stop_postgres`` / ``start_postgres`` let tests take the database away mid-stream.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from siaga112_testkit.devstack.procs import (
    apt_install,
    generated_secret,
    pid_alive,
    port_open,
    read_pid,
    say,
    start_epoch,
    start_ticks,
    write_pidfile,
)

HOST = "127.0.0.1"
ROLE = "siaga112"
DATABASE = "siaga112"
TEST_DATABASE = "siaga112_test"  # the test kit's: tests, load test and bench write here
_PIDFILE = "postgres.pid"
_LOGFILE = "postgres.log"
_PORTFILE = "postgres.port"
_PASSWORD_FILE = "pg-password"
_SOCKET_DIR = "pg-socket"
_RUN_AS = "postgres"
_PASSWORD_ALPHABET = re.compile(r"^[A-Za-z0-9_-]{20,}$")  # token_urlsafe: safe in SQL quotes


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


def database_url(port: int, database: str = DATABASE, password: str | None = None) -> str:
    """The SQLAlchemy URL of a database of the dev cluster, as the project's role; give the
    role's password (``role_password(state_dir)``): the cluster trusts nobody."""
    auth = f"{ROLE}:{password}" if password else ROLE
    return f"postgresql+asyncpg://{auth}@{HOST}:{port}/{database}"


def test_database_url(state_dir: Path, port: int = 5432) -> str:
    """The URL of the test kit's database (``siaga112_test``, made by ``ensure_postgres``)."""
    return database_url(port, TEST_DATABASE, role_password(state_dir))


def role_password(state_dir: Path) -> str:
    """The siaga112 role's password, generated once per state_dir (0600)."""
    path = Path(state_dir) / _PASSWORD_FILE
    password = generated_secret(path)
    if not _PASSWORD_ALPHABET.match(password):
        raise RuntimeError(f"{path}: not a generated password (letters, digits, '-', '_')")
    return password


def ensure_postgres(state_dir: Path, port: int = 5432) -> str:
    """Install, initialise and start the dev cluster as needed; create the role and the
    databases ``siaga112`` and ``siaga112_test``; return the URL of ``siaga112``."""
    bins = bin_dir()
    if bins is None:
        apt_install(["postgresql"])
        bins = bin_dir()
        if bins is None:
            raise RuntimeError("postgresql installed but no /usr/lib/postgresql/*/bin/initdb found")
    data = _data_dir(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    allow_traverse(state_dir)
    if not (data / "PG_VERSION").exists():
        _initdb(bins, state_dir)
    status = postgres_status(state_dir)
    if status.running and not _socket_dir(state_dir).joinpath(f".s.PGSQL.{port}").exists():
        # Started by an older siaga112 with trust auth and no socket: the new pg_hba.conf needs
        # the socket for set-up, and the socket needs a restart.
        say("restarting dev PostgreSQL: password auth for the project's role, no trust")
        stop_postgres(state_dir)
    start_postgres(state_dir, port)
    password = role_password(state_dir)
    _ensure_role_and_db(bins, state_dir, port, password)
    return database_url(port, password=password)


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
    sockets = _socket_dir(state_dir)
    sockets.mkdir(mode=0o700, exist_ok=True)
    sockets.chmod(0o700)
    _chown(sockets)
    (data / "siaga112.conf").write_text(_server_conf(port, sockets))
    _chown(data / "siaga112.conf")
    _write_auth(data)
    logfile = state_dir / _LOGFILE
    logfile.touch(mode=0o640)
    logfile.chmod(0o640)
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
    write_pidfile(state_dir / _PIDFILE, pid)
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
    """The pid in the cluster's own postmaster.pid (line 1), when that process lives and
    started when the file says (line 3, epoch seconds): after a reboot the pid is anyone's."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        pid, started = int(lines[0]), int(lines[2])
    except (OSError, ValueError, IndexError):
        return None
    ticks = start_ticks(pid)
    if ticks is None or not pid_alive(pid):
        return None
    return pid if abs(start_epoch(ticks) - started) <= 2 else None


def _data_dir(state_dir: Path) -> Path:
    return state_dir / "pg"


def _socket_dir(state_dir: Path) -> Path:
    return state_dir / _SOCKET_DIR


def _write_auth(data: Path) -> None:
    """pg_hba.conf and pg_ident.conf, at every start (a cluster made by an older siaga112
    trusted everyone on 127.0.0.1)."""
    owner = _RUN_AS if _is_root() else pwd.getpwuid(os.geteuid()).pw_name
    (data / "pg_hba.conf").write_text(
        "# Written by siaga112_testkit.devstack.postgres at each start. Nothing is trusted.\n"
        "# The superuser: only by peer on the private socket (state_dir/pg-socket, 0700),\n"
        "# only for the cluster's owner; used by the dev stack for set-up.\n"
        "local all postgres peer map=siaga112\n"
        "# The project's role, by password, on loopback TCP; nobody else.\n"
        f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
    )
    (data / "pg_ident.conf").write_text(
        "# Written by siaga112_testkit.devstack.postgres: the cluster's owner is the superuser.\n"
        f"siaga112 {owner} postgres\n"
    )
    for name in ("pg_hba.conf", "pg_ident.conf"):
        (data / name).chmod(0o600)
        _chown(data / name)


def _require_bins() -> Path:
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("no PostgreSQL in /usr/lib/postgresql/*/bin; run ensure_postgres")
    return bins


def _server_conf(port: int, sockets: Path) -> str:
    return "\n".join(
        [
            "# Written by siaga112_testkit.devstack.postgres at each start: dev cluster, not "
            "production.",
            f"port = {port}",
            f"listen_addresses = '{HOST}'",
            f"unix_socket_directories = '{sockets}'",
            "unix_socket_permissions = 0700",
            "password_encryption = 'scram-sha-256'",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 32MB",
            "max_connections = 100",
            "log_min_messages = warning",
            "",
        ]
    )


def allow_traverse(state_dir: Path) -> None:
    """The cluster's owner (postgres) must pass through the state directory, which the stack
    makes 0750 under umask 027 (a fresh clone failed initdb: "Permission denied"). Others may
    traverse it, not list it; what is inside keeps its own modes (secrets 0600)."""
    mode = state_dir.stat().st_mode & 0o777
    if mode & 0o001 == 0:
        state_dir.chmod(mode | 0o001)


def _initdb(bins: Path, state_dir: Path) -> None:
    data = _data_dir(state_dir)
    say(f"initialising dev PostgreSQL cluster in {data}")
    state_dir.mkdir(parents=True, exist_ok=True)
    allow_traverse(state_dir)
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
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ],
        what="initdb",
    )
    _write_auth(data)
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


def _psql(bins: Path, state_dir: Path, port: int, sql: str, database: str = "postgres") -> str:
    """SQL as the superuser, by peer on the private socket, as the cluster's owner. The SQL
    goes on stdin (it may hold the role's password: not on a command line others can see)."""
    argv = [str(bins / "psql"), "-h", str(_socket_dir(state_dir)), "-p", str(port),
            "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-tA", "-f", "-"]
    cmd = ["runuser", "-u", _RUN_AS, "--", *argv] if _is_root() else argv
    proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        raise RuntimeError(f"psql on {_socket_dir(state_dir)} port {port} failed: "
                           f"{proc.stderr.strip()}")
    return proc.stdout.strip()


def _wait_ready(bins: Path, port: int) -> None:
    proc = subprocess.run(
        [str(bins / "pg_isready"), "-h", HOST, "-p", str(port), "-t", "30"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dev PostgreSQL on {HOST}:{port} not ready: {proc.stdout.strip()}")


def _ensure_role_and_db(bins: Path, state_dir: Path, port: int, password: str) -> None:
    # ROLE is "siaga112" and the databases "siaga112" and "siaga112_test" (literals here); the
    # password is a generated token_urlsafe string (checked by role_password), safe in quotes.
    assert _PASSWORD_ALPHABET.match(password)
    if _psql(bins, state_dir, port, "SELECT 1 FROM pg_roles WHERE rolname = 'siaga112'") != "1":
        _psql(bins, state_dir, port, "CREATE ROLE siaga112 LOGIN CREATEDB")
    # Not a superuser; its password set at every start (the file is the truth).
    _psql(bins, state_dir, port,
          f"ALTER ROLE siaga112 NOSUPERUSER LOGIN CREATEDB PASSWORD '{password}'")
    for exists, create in (
        ("SELECT 1 FROM pg_database WHERE datname = 'siaga112'",
         "CREATE DATABASE siaga112 OWNER siaga112"),
        ("SELECT 1 FROM pg_database WHERE datname = 'siaga112_test'",
         "CREATE DATABASE siaga112_test OWNER siaga112"),
    ):
        if _psql(bins, state_dir, port, exists) != "1":
            _psql(bins, state_dir, port, create)
