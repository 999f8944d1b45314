"""A caller who waits alone hears music: the holding bridge is never silent. (Measured with the
call's own recording: MixMonitor records what the caller hears as well as what they say.)"""

from __future__ import annotations

import array
import asyncio
import wave
from pathlib import Path

from tests.conftest import wait_for
from tests.integration.phones import MOBILE, e164, mobile_number
from tests.integration.test_call_path import call_of

QUIET = 30  # RMS of 16-bit samples below this is silence (digital silence is 0-8)


def rms_after(path: Path, seconds: float) -> float:
    with wave.open(str(path)) as w:
        w.setpos(min(w.getnframes(), int(seconds * w.getframerate())))
        samples = array.array("h", w.readframes(w.getnframes()))
    if not samples:
        return 0.0
    return (sum(s * s for s in samples) / len(samples)) ** 0.5


async def test_a_caller_waiting_alone_hears_music(daemon_factory, phones, pcaps, stack) -> None:
    daemon = await daemon_factory(logged_in=[])  # nobody to answer: the caller waits
    number = mobile_number()
    caller = await phones.citizen(number, MOBILE, hold=6.0, audio=pcaps.silence(10))
    call_id = await call_of(daemon, e164(number))
    assert (await caller.wait(20)).ok
    recording = stack.recordings / f"{call_id}.wav"
    await wait_for(lambda: recording.exists() and recording.stat().st_size > 44, 10,
                   f"the recording {recording}")
    await asyncio.sleep(0.5)  # MixMonitor closes the file after the hang-up
    level = rms_after(recording, 1.5)
    assert level > QUIET, f"the waiting caller heard silence (RMS {level:.1f})"
