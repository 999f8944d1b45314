"""The supervisor keeps background work alive: a failing loop is restarted, a failing periodic
step does not end the job, and stop() cancels everything, newest first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from structlog.testing import capture_logs

from siaga112.supervisor import Supervisor


async def test_a_loop_that_raises_is_started_again() -> None:
    runs: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("socket closed")
        done.set()

    jobs = Supervisor(backoff_initial=0.01, backoff_max=0.02)
    with capture_logs() as logs:
        jobs.keep("reader", reader)
        await asyncio.wait_for(done.wait(), 2)
    assert runs == [0, 1, 2]
    assert jobs.restarts == {"reader": 2}
    assert [e["task"] for e in logs if e["event"] == "background_task_failed"] == ["reader"] * 2
    await jobs.stop(1)


async def test_a_periodic_step_that_fails_keeps_its_job_running() -> None:
    steps: list[str] = []

    async def announce() -> None:
        steps.append("tick")
        if len(steps) == 2:
            raise ValueError("bridge gone")

    jobs = Supervisor(backoff_initial=0.01, backoff_max=0.02)
    jobs.every("announce", 0.01, announce, first_after=0)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if len(steps) >= 5:
            break
    assert len(steps) >= 5, "the job stopped after its step failed"
    assert jobs.restarts == {"announce": 1}
    await jobs.stop(1)


async def test_stop_cancels_newest_first_within_the_grace() -> None:
    stopped: list[str] = []

    def forever(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                stopped.append(name)
        return run

    jobs = Supervisor()
    for name in ("first", "second", "third"):
        jobs.keep(name, forever(name))
    await asyncio.sleep(0)
    await jobs.stop(1)
    assert stopped == ["third", "second", "first"]
