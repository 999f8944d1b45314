"""The test PBX: a real Asterisk 22 in a Debian sid chroot, configured only from the project's
asterisk-conf/ and dialplan/ (see ../shared/TEST-PBX.md for why a chroot and the pitfalls).

The root is built once per machine under /var/cache/siaga112 (outside the clone) and reused.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from siaga112_testkit.devstack import procs
from siaga112_testkit.devstack.procs import say

PACKAGES = "asterisk,asterisk-core-sounds-en-gsm,asterisk-moh-opsound-gsm"
# The ARI user's password line in asterisk-conf/ari.conf (the placeholder the daemon refuses).
_ARI_PASSWORD_LINE = re.compile(r"^(password\s*=\s*)change-me-ari\b", re.MULTILINE)
DEFAULT_ROOT = Path(os.environ.get("SIAGA112_PBX_ROOT", "/var/cache/siaga112/pbx-root"))
# Test calls' recordings older than this are deleted at each `stack up`: no test or bench reads a
# recording older than its own run (the longest, `make bench`, takes under an hour).
RECORDINGS_KEPT = 2 * 3600.0


@dataclass(frozen=True)
class Pbx:
    repo: Path  # the clone: asterisk-conf/, dialplan/, build/sounds/
    state_dir: Path  # pid file and log
    root: Path = DEFAULT_ROOT

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "asterisk.pid"

    @property
    def ari_password_file(self) -> Path:
        return self.state_dir / "ari-password"

    def ari_password(self) -> str:
        """The test PBX's ARI password: generated once per state_dir (0600), written into the
        PBX's copy of ari.conf and the dev settings, never the repository's placeholder."""
        return procs.generated_secret(self.ari_password_file)

    @property
    def fallback_journal(self) -> Path:
        return self.root / "var/spool/asterisk/siaga112-fallback/calls.log"

    @property
    def recordings(self) -> Path:
        return self.root / "var/spool/asterisk/monitor/siaga112"

    def cli(self, command: str, timeout: float = 15) -> str:
        out = subprocess.run(
            ["chroot", str(self.root), "asterisk", "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return out.stdout

    # -- building -------------------------------------------------------------------------

    def ensure_root(self) -> None:
        if (self.root / "usr/sbin/asterisk").exists():
            return
        procs.apt_install(["debootstrap"])
        mirror = _apt_mirror()
        tmp = self.root.with_name(self.root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        say(f"building the test PBX root in {self.root} (Debian sid, Asterisk 22; ~1 minute)")
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "sid", str(tmp), mirror],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tmp.rename(self.root)
        say("test PBX root built")

    def install_config(self) -> bool:
        """Replace the distribution's sample configs with ours; write hosts; install prompts.
        Returns whether the module list changed (a reload cannot load or unload modules)."""
        etc = self.root / "etc/asterisk"
        modules = etc / "modules.conf"
        old_modules = modules.read_text() if modules.exists() else ""
        samples = self.root / "etc/asterisk.samples"
        if not samples.exists():
            etc.rename(samples)
        etc.mkdir(exist_ok=True)
        for old in etc.glob("*.conf"):
            old.unlink()
        for src in [*sorted((self.repo / "asterisk-conf").glob("*.conf")),
                    *sorted((self.repo / "dialplan").glob("*.conf"))]:
            shutil.copy2(src, etc / src.name)
        ari_conf = etc / "ari.conf"
        text, n = _ARI_PASSWORD_LINE.subn(lambda m: m.group(1) + self.ari_password(),
                                         ari_conf.read_text())
        if n != 1:
            raise RuntimeError(f"{self.repo / 'asterisk-conf/ari.conf'}: expected one "
                               "'password = change-me-ari' line for the test PBX to replace")
        procs.write_private(ari_conf, text)
        hostname = socket.gethostname()
        (self.root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {hostname}\n")
        (self.root / "run/asterisk").mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.fallback_journal.parent.mkdir(parents=True, exist_ok=True)
        sounds = self.repo / "build/sounds"
        dest = self.root / "usr/share/asterisk/sounds/siaga112"
        if sounds.is_dir():
            shutil.copytree(sounds, dest, dirs_exist_ok=True)
        return modules.read_text() != old_modules

    # -- running ---------------------------------------------------------------------------

    def running(self) -> bool:
        return procs.read_pid(self.pidfile) is not None

    def prune_recordings(self, older_than: float = RECORDINGS_KEPT) -> int:
        """Delete the test calls' recordings older than `older_than` seconds (and the instant
        recall's copies): every load test and bench records every call, and nothing else
        deletes them on the test PBX (49 GB of them had piled up on one machine in a day).
        Returns how many went."""
        cutoff = time.time() - older_than
        gone = 0
        for directory in (self.recordings, self.recordings / "recall"):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        gone += 1
                except FileNotFoundError:
                    continue
        return gone

    def up(self, timeout: float = 60) -> None:
        self.ensure_root()
        gone = self.prune_recordings()
        if gone:
            say(f"deleted {gone} test-call recordings older than "
                f"{RECORDINGS_KEPT / 3600:g} h from the test PBX")
        modules_changed = self.install_config()
        if self.running():
            if not modules_changed:
                self.cli("core reload")
                return
            say("the PBX's module list changed: restarting the test PBX")
            self.down()
        if not wait_port_closed("127.0.0.1", 8088, 15):
            raise RuntimeError(
                "something not started by siaga112 listens on 127.0.0.1:8088 (an Asterisk of "
                "another setup?); stop it, or this test PBX cannot start"
            )
        say("starting the test PBX (Asterisk 22) on 127.0.0.1:5060, ARI on 127.0.0.1:8088")
        procs.spawn(
            ["chroot", str(self.root), "asterisk", "-f"],
            self.pidfile,
            self.state_dir / "asterisk.log",
        )
        procs.wait_port("127.0.0.1", 8088, timeout, "Asterisk ARI")
        wait_booted(self.cli, self.running, timeout, self.state_dir / "asterisk.log")

    def down(self) -> bool:
        """Stop the test PBX; return once ARI's port is closed too. True if it was running."""
        was_up = stop_asterisk(self.cli, self.pidfile)
        if was_up and not wait_port_closed("127.0.0.1", 8088, 15):
            raise RuntimeError("the test PBX stopped but 127.0.0.1:8088 still listens after 15 s")
        return was_up

    def status(self) -> str:
        if not self.running():
            return "test PBX: down"
        pid = procs.read_pid(self.pidfile)
        return f"test PBX: up (pid {pid})\n" + self.cli("core show uptime")


def wait_booted(cli: Callable[[str], str], running: Callable[[], bool], timeout: float,
                log: Path) -> None:
    """Until the Asterisk behind `cli` says it is fully booted; raise if it dies or takes
    longer than timeout."""
    deadline = time.monotonic() + timeout
    while "fully booted" not in cli("core waitfullybooted").lower():
        if time.monotonic() > deadline or not running():
            raise RuntimeError(f"Asterisk did not boot; see {log}")
        time.sleep(0.2)


def wait_port_closed(host: str, port: int, timeout: float) -> bool:
    """Until nothing accepts on host:port (a stopping Asterisk's last threads close it a little
    after its main thread is gone); False if it still listens after timeout."""
    deadline = time.monotonic() + timeout
    while procs.port_open(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_asterisk(cli: Callable[..., str], pidfile: Path) -> bool:
    """`core stop now`, then by its pid whatever the CLI did. True if it was running."""
    if procs.read_pid(pidfile) is None:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        cli("core stop now", timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        pass
    procs.stop_pid(pidfile, timeout=10)
    return True


def _apt_mirror() -> str:
    """The machine's own Debian mirror, from its apt sources (never a host written in the repo)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for f in sources:
        for line in f.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    raise RuntimeError("no Debian mirror found in /etc/apt sources; cannot build the test PBX root")
