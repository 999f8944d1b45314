"""A load run begins on a PBX at rest: no channel, and (the local PBX) quiet. A bench step run
right after a 300 calls/s step measured that step's tear-down as its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from siaga112.ari.client import AriError
from siaga112.settings import Settings
from siaga112_testkit.loadtest import runner


class FakeAri:
    """AriClient's context manager and channels(): the counts given, one per look."""

    counts: list[int | None] = []
    looks = 0

    def __init__(self, _settings: Any) -> None:
        pass

    async def __aenter__(self) -> FakeAri:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass

    async def channels(self) -> list[object]:
        n = FakeAri.counts[min(FakeAri.looks, len(FakeAri.counts) - 1)]
        FakeAri.looks += 1
        if n is None:
            raise AriError("GET", "/channels", 503, "busy")
        return [object()] * n


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> runner.RunContext:
    monkeypatch.setattr(runner, "AriClient", FakeAri)
    monkeypatch.setattr(runner, "REST_POLL", 0.0)
    FakeAri.looks = 0
    said: list[str] = []
    c = runner.RunContext(Settings(), "127.0.0.1:5060", tmp_path, said.append)
    c.extra_notes = said  # what it said, for the test
    return c


async def test_it_waits_for_the_last_channels_to_go_and_says_so(ctx: runner.RunContext) -> None:
    FakeAri.counts = [3, None, 1, 0]
    assert await runner.wait_at_rest(ctx) is None
    assert FakeAri.looks == 4
    assert ctx.extra_notes[0] == "  waiting for the PBX to be at rest (3 channels)"
    assert ctx.extra_notes[-1].startswith("  the PBX is at rest after")


async def test_a_pbx_at_rest_is_not_waited_for(ctx: runner.RunContext) -> None:
    FakeAri.counts = [0]
    assert await runner.wait_at_rest(ctx) is None
    assert FakeAri.looks == 1 and ctx.extra_notes == []


@pytest.fixture
def hung_up(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """hang_up_all's calls: the channels listed when each came."""
    calls: list[int] = []

    async def hang_up_all(ari: FakeAri, *, seconds: float) -> int:
        calls.append(len(await ari.channels()))
        return calls[-1]

    monkeypatch.setattr(runner, "hang_up_all", hang_up_all)
    return calls


async def test_past_the_bound_it_hangs_up_what_the_last_run_left_and_waits_again(
        ctx: runner.RunContext, hung_up: list[int]) -> None:
    FakeAri.counts = [425, 425, 0]  # an app_queue burst's callers, still up after the wait
    ctx.rest_seconds = 0.0
    assert await runner.wait_at_rest(ctx) is None
    assert hung_up == [425]
    assert ctx.extra_notes[0] == ("  425 channels after 0 s: hung up the 425 channels left by "
                                  "the last run; waiting again")


async def test_past_the_second_bound_it_says_what_the_pbx_was_doing(
        ctx: runner.RunContext, hung_up: list[int]) -> None:
    FakeAri.counts = [7]
    ctx.rest_seconds = 0.0
    assert await runner.wait_at_rest(ctx) == "7 channels"
    assert hung_up == [7]  # once only


async def test_a_busy_pbx_with_no_channel_is_not_at_rest(
        ctx: runner.RunContext, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeAri.counts = [0]
    ctx.rest_seconds = 0.0
    ctx.pbx_pid = os.getpid()

    async def tearing_down(pid: int | None, seconds: float) -> float | None:
        # 45% of a core: still tearing the last run's calls down (no daemon of ours here)
        return None if pid is None else 0.45

    monkeypatch.setattr(runner, "_cpu_share", tearing_down)
    assert await runner.wait_at_rest(ctx) == "0 channels, 45% of a core"


async def test_a_daemon_still_starting_is_not_at_rest(
        ctx: runner.RunContext, monkeypatch: pytest.MonkeyPatch) -> None:
    # A daemon the run started, still in its start-up work (the recordings' retention sweep
    # of a full directory: 2.6 s of CPU), beside a quiet PBX: its CPU is not the calls'.
    FakeAri.counts = [0]
    ctx.rest_seconds = 0.0
    ctx.pbx_pid, ctx.daemon_pid = 1, 2

    async def sweeping(pid: int | None, seconds: float) -> float | None:
        return {1: 0.01, 2: 0.9}.get(pid or 0)

    monkeypatch.setattr(runner, "_cpu_share", sweeping)
    assert await runner.wait_at_rest(ctx) == "0 channels, 1% of a core; the daemon 90%"
    ctx.daemon_pid = None  # a daemon already running: not ours to wait for
    assert await runner.wait_at_rest(ctx) is None


async def test_cpu_share_of_an_unknown_process_is_unknown() -> None:
    assert await runner._cpu_share(None, 5.0) is None
    assert await runner._cpu_share(2**22 + 12345, 0.0) is None  # no such pid
