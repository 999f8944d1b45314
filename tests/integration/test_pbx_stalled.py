"""A PBX that stalls for longer than the request timeout (a flood it cannot keep up with, a VM
its host paused): the real Asterisk 22, stopped with SIGSTOP and let go again. Asterisk reads
one events socket's requests in one thread, in the order asked (ari/socket_rest.py): a request
that timed out there is not lost, it waits in that queue and is carried out once Asterisk runs.
What the daemon asks meanwhile goes over HTTP; once the late request is answered, the socket
carries requests again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from siaga112.ari.client import AriClient, Unreachable
from siaga112.ari.events import EventStream
from siaga112.ari.socket_rest import SocketRest
from siaga112_testkit.loadtest.runner import local_pbx_pid
from tests.conftest import ari_settings, wait_for

pytestmark = pytest.mark.integration

VAR = "SIAGA112_STALL_TEST"


async def test_a_stalled_pbx_carries_out_the_late_request_and_the_next_goes_over_http(
        stack) -> None:
    pid = local_pbx_pid()
    assert pid is not None, "the test PBX is not running"
    # HTTP waits up to 10 s; the socket's answer is late after 0.5 s.
    settings = ari_settings().model_copy(update={"request_timeout": 10.0,
                                                 "app": "siaga112-stall-test"})
    rest = SocketRest(0.5)
    via: list[str] = []

    async def on_connect() -> None:
        return None

    stream = EventStream(settings, on_event=lambda _e: None, on_connect=on_connect, rest=rest)
    task = asyncio.create_task(stream.run())
    stopped = False
    try:
        await wait_for(lambda: rest.attached, 10, "requests over the socket")
        async with AriClient(settings, observe=lambda _m, _s, v: via.append(v),
                             socket=rest) as ari:
            await ari.set_global(VAR, "before")
            os.kill(pid, signal.SIGSTOP)
            stopped = True
            with pytest.raises(Unreachable, match="no answer within 0.5 s"):
                await ari.set_global(VAR, "late")
            assert rest.behind
            # Asked while the PBX is still stopped: over HTTP, answered once it runs again.
            asking = asyncio.create_task(ari.get_global(VAR))
            await asyncio.sleep(0.5)
            assert not asking.done()
            os.kill(pid, signal.SIGCONT)
            stopped = False
            assert await asyncio.wait_for(asking, 10) in ("before", "late")
            await wait_for(lambda: not rest.behind, 10, "the late answer")
            # The late request was carried out, and the socket carries the next one.
            assert await ari.get_global(VAR) == "late"
            assert via == ["socket", "socket", "http", "socket"]
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        stream.stop()
        task.cancel()  # its reader waits on the socket, which the PBX keeps open
        with contextlib.suppress(asyncio.CancelledError):
            await task
