"""The daemon killed outright (kill -9) with callers waiting and a call connected: after a
restart it takes everything back from Asterisk. A real daemon process, real SIPp phones."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from siaga112 import legs, procs
from siaga112.ari.client import AriClient
from tests.conftest import ari_settings, reset_pbx, set_choices, wait_for
from tests.integration.pbx_view import connected_and_waiting, holding_channels, holding_count

pytestmark = pytest.mark.integration


def write_config(path: Path, stack, state_dir: Path) -> Path:
    path.write_text(
        f'state_dir = "{state_dir}"\n'
        f'fallback_journal = "{stack.fallback_journal}"\n'
        'log_level = "debug"\n'
        "[ari]\n"
        f'password = "{ari_settings().password.get_secret_value()}"\n'
        "[database]\n"
        f'url = "{stack.db_url}"\n'
        "[recording]\n"
        f'dir = "{stack.recordings}"\n'
        "[queue]\n"
        "wrapup = 0\nring_timeout = 4\n"
        "desk_media_timeout = 0\n"  # the SIPp desk phones send no media
        "[silence]\n"
        "enabled = false\n"
        "[mqtt]\n"
        'topic_prefix = "test-restart/siaga112"\n'
    )
    return path


class DaemonProcess:
    def __init__(self, config: Path, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.pidfile = state_dir / "test-daemon.pid"
        self.log = state_dir / "daemon.log"

    def start(self) -> int:
        env = dict(os.environ, SIAGA112_CONFIG=str(self.config))
        return procs.spawn([sys.executable, "-m", "siaga112.cli", "run"], self.pidfile,
                           self.log, env=env)

    def kill9(self) -> None:
        pid = procs.read_pid(self.pidfile)
        assert pid is not None, "the daemon is not running"
        os.kill(pid, signal.SIGKILL)
        procs.stop_pid(self.pidfile, timeout=5)

    def stop(self) -> None:
        procs.stop_pid(self.pidfile, timeout=10)


def log_events(log: Path, name: str) -> list[dict]:
    """The daemon's JSON log lines with this event name."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name:
                found.append(entry)
    return found


@pytest.mark.parametrize("upgrade", [False, True], ids=["restart", "upgrade"])
async def test_kill_9_loses_no_call(stack, phones, tmp_path: Path, upgrade: bool) -> None:
    """upgrade: while the daemon is down its waiting callers are moved into the single
    holding bridge of daemons before 2026-12 (`siaga112-holding`), as an upgrade from such a
    daemon would find them: the new daemon takes them back from it all the same."""
    await reset_pbx(["op1"])
    state = tmp_path / "state"
    state.mkdir()
    daemon = DaemonProcess(write_config(tmp_path / "siaga112.toml", stack, state), state)
    daemon.start()
    try:
        await wait_for(lambda: log_events(daemon.log, "resynced"), 20, "the daemon up")
        async with AriClient(ari_settings()) as ari:
            op1, connected, first_bridge, waiting = await connected_and_waiting(phones, ari)
            daemon.kill9()
            # With the daemon gone, the calls stay as they are in Asterisk.
            await asyncio.sleep(1.0)
            assert await holding_count(ari) == 2
            assert len((await ari.get_bridge(first_bridge)).channels) == 2
            if upgrade:
                await ari.create_bridge(legs.HOLDING_PREFIX, "holding")
                await ari.add_to_bridge(legs.HOLDING_PREFIX, sorted(await holding_channels(ari)),
                                        role="participant")
                old = await ari.get_bridge(legs.HOLDING_PREFIX)
                assert len(old.channels) == 2 and await holding_count(ari) == 2
            # op2 is logged in while the daemon is down (in PostgreSQL, as the API stores it).
            await set_choices({"op2": "available"})
            op2 = await phones.operator(2, ring=0.2, talk=1.0, calls=2)
            daemon.start()
            for w in waiting:
                result = await w.wait(30)
                assert result.ok, result.explain()
            assert len((await op2.wait(10)).events("invite")) == 2
            # The connected call was never cut: still the same bridge until the citizen's BYE.
            result = await connected.wait(20)
            assert result.ok and result.events("bye_sent"), result.explain()
            assert len((await op1.wait(5)).events("invite")) == 1
            if upgrade:
                assert (await ari.get_bridge(legs.HOLDING_PREFIX)).channels == []
        resyncs = log_events(daemon.log, "resynced")
        assert [r["taken_back"] for r in resyncs] == [0, 3], resyncs
    finally:
        daemon.stop()

