"""Pid files name a process by pid and start time, and nothing else is ever signalled; a
server removes only its own pid file; logs are appended to, 0640; secrets are written 0600."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from siaga112 import procs


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process of our own that a wrong pid file could hurt."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_pid_file_holds_pid_and_start_time(tmp_path: Path, sleeper) -> None:  # noqa: ANN001
    pidfile = tmp_path / "x.pid"
    procs.write_pidfile(pidfile, sleeper.pid)
    pid, ticks = pidfile.read_text().split()
    stat = Path(f"/proc/{sleeper.pid}/stat").read_text()
    assert (int(pid), ticks) == (sleeper.pid, stat.rsplit(")", 1)[1].split()[19])
    assert procs.read_pid(pidfile) == sleeper.pid


def test_a_pid_with_another_start_time_is_not_ours_and_is_never_signalled(
    tmp_path: Path, sleeper  # noqa: ANN001
) -> None:
    """After a reboot (or once our server is gone) the pid may be any process's."""
    pidfile = tmp_path / "x.pid"
    ticks = procs.start_ticks(sleeper.pid)
    assert ticks is not None
    pidfile.write_text(f"{sleeper.pid} {ticks + 1}\n")
    assert procs.read_pid(pidfile) is None
    assert procs.stop_pid(pidfile, timeout=0.5) is False
    time.sleep(0.1)
    assert sleeper.poll() is None, "stop_pid signalled a process its pid file does not name"
    assert not pidfile.exists(), "a stale pid file is removed"


def test_an_old_pid_file_written_before_the_process_started_is_not_trusted(
    tmp_path: Path, sleeper  # noqa: ANN001
) -> None:
    pidfile = tmp_path / "x.pid"
    pidfile.write_text(f"{sleeper.pid}\n")  # the old form: pid only
    assert procs.read_pid(pidfile) == sleeper.pid  # written after the start: trusted
    an_hour_ago = time.time() - 3600
    os.utime(pidfile, (an_hour_ago, an_hour_ago))  # written before the process existed
    assert procs.read_pid(pidfile) is None
    assert procs.stop_pid(pidfile, timeout=0.5) is False
    assert sleeper.poll() is None


def test_stop_pid_stops_the_process_it_names(tmp_path: Path, sleeper) -> None:  # noqa: ANN001
    pidfile = tmp_path / "x.pid"
    procs.write_pidfile(pidfile, sleeper.pid)
    assert procs.stop_pid(pidfile, timeout=5) is True
    assert sleeper.wait(5) is not None
    assert not pidfile.exists()


def test_a_server_removes_only_its_own_pid_file(tmp_path: Path, sleeper) -> None:  # noqa: ANN001
    pidfile = tmp_path / "siaga112.pid"
    procs.write_pidfile(pidfile, os.getpid())
    procs.write_pidfile(pidfile, sleeper.pid)  # a newer daemon took over the pid file
    assert procs.remove_own_pidfile(pidfile) is False
    assert procs.read_pid(pidfile) == sleeper.pid
    procs.write_pidfile(pidfile, os.getpid())
    assert procs.remove_own_pidfile(pidfile) is True
    assert not pidfile.exists()


def test_spawn_appends_to_the_log_and_keeps_it_0640(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    log.write_text("a line from the daemon still running\n")
    log.chmod(0o644)
    pidfile = tmp_path / "d.pid"
    pid = procs.spawn([sys.executable, "-c", "print('the new one')"], pidfile, log)
    for _ in range(100):
        if procs.start_ticks(pid) is None or not procs.pid_alive(pid):
            break
        time.sleep(0.05)
    procs.stop_pid(pidfile, timeout=5)
    assert log.read_text() == "a line from the daemon still running\nthe new one\n"
    assert log.stat().st_mode & 0o777 == 0o640


def test_spawned_servers_create_files_without_world_access(tmp_path: Path) -> None:
    made = tmp_path / "made-by-the-server"
    pid = procs.spawn([sys.executable, "-c", f"open({str(made)!r}, 'w').write('x')"],
                      tmp_path / "s.pid", tmp_path / "s.log")
    for _ in range(100):
        if made.exists() and not procs.pid_alive(pid):
            break
        time.sleep(0.05)
    procs.stop_pid(tmp_path / "s.pid", timeout=5)
    assert made.stat().st_mode & 0o777 == 0o640


def test_private_files_are_0600_even_when_they_existed(tmp_path: Path) -> None:
    path = tmp_path / "siaga112.toml"
    path.write_text("old")
    path.chmod(0o644)
    procs.write_private(path, "token = 'x'\n")
    assert path.read_text() == "token = 'x'\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_process_whose_main_thread_exited_is_alive_while_its_threads_run(
    tmp_path: Path,
) -> None:
    """Asterisk's `core stop now` leaves the main thread a zombie while other threads still
    hold ARI's socket; a stop that took that for gone started the next PBX onto a busy port."""
    script = (
        "import ctypes, threading, time\n"
        "threading.Thread(target=time.sleep, args=(1.5,)).start()\n"
        "ctypes.CDLL(None).pthread_exit(None)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the main thread never exited"
            time.sleep(0.01)
        assert procs.pid_alive(proc.pid), "a thread still runs: the process is not gone"
        proc.wait(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    assert not procs.pid_alive(proc.pid)
