"""A block takes effect now: `siaga112 blocklist add|remove`, run as its own process against the
daemon's database, reaches the running daemon's screening through PostgreSQL NOTIFY (heard by
records.listen), not on the periodic reload; the next real call from that number is screened.
Also after PostgreSQL went away and came back (the listener reconnects)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from siaga112.model import CallState, Disposition
from tests.conftest import REPO, Stack, wait_for
from tests.integration.phones import MOBILE, e164, mobile_number
from tests.integration.test_call_path import call_of, record

pytestmark = pytest.mark.integration

SCREENED_WITHIN = 2.0  # the poll's bound; the periodic reload (30 s) would not make it


async def blocklist_cli(stack: Stack, *argv: str) -> float:
    """Run `siaga112 blocklist ...` as its own process on the tests' database; returns the
    monotonic time it exited."""
    env = {**os.environ, "SIAGA112_DATABASE__URL": stack.db_url}
    out = await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).with_name("siaga112")), "blocklist", *argv],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    exited = time.monotonic()
    assert out.returncode == 0, out.stderr
    return exited


async def screened_as(daemon, number: str, blocked: bool, exited: float) -> float:
    """Wait (at most SCREENED_WITHIN) until screening says blocked or not; returns the seconds
    from the CLI's exit (printed, not asserted)."""
    await wait_for(lambda: daemon.screening.check(number).blocked is blocked, SCREENED_WITHIN,
                   f"screening to say {number} is {'' if blocked else 'not '}blocked")
    seconds = time.monotonic() - exited
    print(f"screening changed {seconds * 1000:.0f} ms after the CLI exited")
    return seconds


async def test_cli_block_and_unblock_reach_the_running_daemon_at_once(
    daemon_factory, phones, stack
) -> None:
    daemon = await daemon_factory(logged_in=["op1"], screening={"bypass_wait": 1.0})
    await wait_for(lambda: daemon.blocklist_listener.listening, 10, "the blocklist listener")
    number = mobile_number()
    caller = e164(number)
    assert not daemon.screening.check(caller).blocked
    heard = daemon.blocklist_listener.notifications

    exited = await blocklist_cli(stack, "add", caller, "--reason", "prank", "--by", "pytest")
    await screened_as(daemon, caller, True, exited)
    assert daemon.blocklist_listener.notifications > heard, "heard by NOTIFY, not a reload"

    # The next call from the number hears the blocked announcement and reaches nobody.
    op1 = await phones.operator(1, ring=0.2, talk=1.0, calls=None)
    citizen = await phones.citizen(number, MOBILE, hold=None)
    call_id = await call_of(daemon, caller)
    session = daemon.stasis.sessions[call_id]
    await wait_for(lambda: session.state is CallState.REJECTED, 10, "the call rejected")
    await wait_for(lambda: session.arrival.announced, 30, "the blocked announcement played out")
    result = await citizen.wait(30)
    assert result.ok and result.events("bye_received"), result.explain()
    assert [e for e in op1.logs() if e.event == "invite"] == [], "a blocked caller rang op1"
    blocked = await record(daemon, call_id)
    assert blocked.call.disposition == Disposition.BLOCKED.value
    types = [e.type for e in blocked.events]
    assert "blocked_announced" in types and "queued" not in types, types

    # Unblocked the same way: the next call reaches the operator.
    heard = daemon.blocklist_listener.notifications
    exited = await blocklist_cli(stack, "remove", caller, "--by", "pytest")
    await screened_as(daemon, caller, False, exited)
    assert daemon.blocklist_listener.notifications > heard
    citizen = await phones.citizen(number, MOBILE, hold=None)
    call_id = await call_of(daemon, caller)
    result = await citizen.wait(30)
    assert result.ok and result.events("bye_received"), result.explain()
    answered = await record(daemon, call_id)
    assert answered.call.operator == "op1", answered.call
    assert answered.call.disposition == Disposition.GENUINE.value
    assert "blocked_announced" not in [e.type for e in answered.events]


async def test_listener_comes_back_after_postgres_restarts(daemon_factory, stack) -> None:
    """PostgreSQL stops and starts again under a running daemon: the listener reconnects (with
    backoff) and a block from the CLI afterwards is screened at once."""
    from siaga112_testkit.devstack.postgres import start_postgres, stop_postgres

    daemon = await daemon_factory(logged_in=[])
    listener = daemon.blocklist_listener
    await wait_for(lambda: listener.listening, 10, "the blocklist listener")
    await asyncio.to_thread(stop_postgres, stack.state_dir)
    try:
        await wait_for(lambda: not listener.listening, 10, "the listener to see PostgreSQL go")
        await asyncio.sleep(1.0)  # a few failed reconnects
        assert not listener.listening
    finally:
        await asyncio.to_thread(start_postgres, stack.state_dir, 5432)
    await wait_for(lambda: listener.listening, 15, "the listener back")
    caller = e164(mobile_number())
    exited = await blocklist_cli(stack, "add", caller, "--hours", "1", "--by", "pytest")
    await screened_as(daemon, caller, True, exited)
    exited = await blocklist_cli(stack, "remove", caller, "--by", "pytest")
    await screened_as(daemon, caller, False, exited)

