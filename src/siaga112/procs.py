"""Start background processes with a pid file and stop them by that pid.

A pid file holds ``PID STARTTIME``: the process's start time in clock ticks after boot, field 22
of /proc/PID/stat. A pid is only trusted, and only signalled, while the process with that pid
has that start time: after a reboot, or once the server has gone, the pid may belong to any
process, and `stack down` runs as root. A pid file of the older ``PID`` form is trusted only
for a process that had started when the file was written (its mtime).

Logs are appended to, never truncated, and created 0640 (umask 027 for the servers too): they
hold callers' numbers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Popen objects of the servers we started, kept so that Python does not warn that a child is
# "still running" when the object would be collected; they are stopped by pid all the same.
_children: dict[int, subprocess.Popen[bytes]] = {}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); read its state. A multi-threaded process whose main
    # thread has exited also shows "Z" while its other threads still run and still hold its
    # sockets (measured: Asterisk's `core stop now` leaves ARI listening for a while in that
    # state), so it is gone only when no thread is left but the zombie leader.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
        return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir()) > 1
    except OSError:
        return False


UMASK = 0o027  # files 0640, directories 0750, for everything the stack starts
LOG_MODE = 0o640


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (starttime, clock ticks after boot); None if no process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    try:
        return int(fields[22 - 3])  # fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def start_epoch(ticks: int) -> float:
    """A start time in ticks after boot as seconds since the epoch."""
    btime = 0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            btime = int(line.split()[1])
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def same_process(pid: int, ticks: int) -> bool:
    """Whether pid is still the process that started at `ticks`, and not a zombie."""
    return start_ticks(pid) == ticks and pid_alive(pid)


def write_pidfile(pidfile: Path, pid: int) -> None:
    """Write ``PID STARTTIME`` (atomically: a reader never sees half a file)."""
    ticks = start_ticks(pid)
    if ticks is None:
        raise RuntimeError(f"process {pid} is gone; not writing {pidfile}")
    tmp = pidfile.with_name(f".{pidfile.name}.{os.getpid()}")
    tmp.write_text(f"{pid} {ticks}\n")
    tmp.replace(pidfile)


def _read_entry(pidfile: Path) -> tuple[int, int | None, float] | None:
    """(pid, start ticks or None for an old-form file, the file's mtime)."""
    try:
        text = pidfile.read_text().split()
        mtime = pidfile.stat().st_mtime
        return int(text[0]), (int(text[1]) if len(text) > 1 else None), mtime
    except (OSError, ValueError, IndexError):
        return None


def _verified(pidfile: Path) -> tuple[int, int] | None:
    """(pid, start ticks) of the live process the pid file names, or None."""
    entry = _read_entry(pidfile)
    if entry is None:
        return None
    pid, ticks, mtime = entry
    now = start_ticks(pid)
    if now is None or not pid_alive(pid):
        return None
    if ticks is None:  # old form: the process must have been there when the file was written
        if start_epoch(now) > mtime + 1.0:
            return None
        return pid, now
    return (pid, ticks) if now == ticks else None


def read_pid(pidfile: Path) -> int | None:
    """The pid in pidfile if that process still runs (same pid and same start time)."""
    found = _verified(pidfile)
    return found[0] if found else None


def remove_own_pidfile(pidfile: Path, pid: int | None = None) -> bool:
    """Remove pidfile only if it names this process (or pid) with its start time: a newer
    server may have written its own pid there since. True if removed."""
    pid = os.getpid() if pid is None else pid
    entry = _read_entry(pidfile)
    if entry is None or entry[0] != pid:
        return False
    ticks = start_ticks(pid)
    if entry[1] is not None and ticks is not None and entry[1] != ticks:
        return False
    pidfile.unlink(missing_ok=True)
    return True


def spawn(
    argv: Sequence[str],
    pidfile: Path,
    logfile: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start argv detached from our session (umask 027), appending its output to logfile
    (created or kept 0640), write its pid file, return its pid."""
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    fd = open_log(logfile)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            umask=UMASK,
        )
    finally:
        os.close(fd)
    _children[proc.pid] = proc
    write_pidfile(pidfile, proc.pid)
    return proc.pid


def open_log(logfile: Path) -> int:
    """An append-only descriptor on logfile: never truncated; 0640 (an older 0644 file of
    ours is tightened)."""
    fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_MODE)
    with contextlib.suppress(OSError):  # not ours to change (another user's file)
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, LOG_MODE)
    return fd


def generated_secret(path: Path) -> str:
    """The secret in path (0600), generated there the first time (URL-safe characters only,
    so it can stand in a URL, a TOML string or SQL quotes)."""
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    if not secret:
        secret = secrets.token_urlsafe(24)
        write_private(path, secret + "\n")
    path.chmod(0o600)
    return secret


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600): tokens, passwords, settings holding them.
    The file is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)


def stop_pid(pidfile: Path, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    """Signal the process in pidfile, wait for it to go, SIGKILL after timeout. True if it was
    up. Only the process the pid file names with its start time is ever signalled."""
    found = _verified(pidfile)
    if found is None:
        pidfile.unlink(missing_ok=True)  # stale: names no process, or another one
        return False
    pid, ticks = found
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and same_process(pid, ticks):
        _reap(pid)
        time.sleep(0.05)
    if same_process(pid, ticks):
        os.kill(pid, signal.SIGKILL)
        while same_process(pid, ticks):
            _reap(pid)
            time.sleep(0.05)
    remove_own_pidfile(pidfile, pid)
    return True


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _children.pop(pid, None)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_port(host: str, port: int, timeout: float, what: str, udp: bool = False) -> None:
    """Wait until a TCP port accepts connections; raise naming `what` if it does not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} did not listen on {host}:{port} in {timeout}s: {exc}"
                ) from exc
            time.sleep(0.1)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False
