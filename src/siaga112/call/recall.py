"""Instant recall: the operator presses `*6` (or the API asks) and hears the call's last
`recording.recall_seconds` (30 s) again, on their own leg only, while the citizen stays on the
line; `#` goes back to the call.

The source is the recording the dialplan already makes (MixMonitor, `<recording.dir>/<call
id>.wav`, the citizen's leg: what the citizen said and heard). Its tail is copied, as a WAV of
its own, to `<recording.dir>/recall/<call id>.wav` (in a worker thread), and the PBX plays that
copy on the operator's channel, which stays in the call's bridge: a playback on one member of a
bridge goes to that member only, so the citizen (and an agency) hear nothing of it, and the
operator's keys still arrive (measured on Asterisk 22: `#` during the playback reached us as
ChannelDtmfReceived). The live file lags behind the call: MixMonitor writes it in 32 kB blocks
(2 s of 8 kHz 16-bit audio, seen on Asterisk 22); what is not yet on disk is not played.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from siaga112.ari.client import AriError, channel_gone
from siaga112.call.errors import CallNotConnected, CommandError
from siaga112.model import CallEventType, CallState

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)

RECALL_SUBDIR = "recall"
STALE_COPY_SECONDS = 3600.0  # copies left by a call that ended mid-recall are swept


class NoRecording(CommandError):
    """The call has no recording to play again (recording off, or nothing written yet)."""

    def __init__(self, call_id: str, why: str) -> None:
        super().__init__(f"no recording of call {call_id!r} to recall: {why}")
        self.call_id = call_id


class NotRecalling(CommandError):
    """'Back to the call' when the operator is not hearing a recall."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} has no recall playing")
        self.call_id = call_id


class RecordingUnreadable(ValueError):
    """The bytes are not a PCM WAV this module can cut."""


@dataclass(frozen=True)
class PcmTail:
    rate: int
    channels: int
    sample_width: int  # bytes
    frames: bytes

    @property
    def seconds(self) -> float:
        return len(self.frames) / (self.rate * self.channels * self.sample_width)


def pcm_tail(data: bytes, seconds: float) -> PcmTail:
    """The last `seconds` of a PCM WAV. The recording is live: its data chunk's size may still
    say 0 (MixMonitor writes it at the end) or more than is there, so the data runs to the end of
    the file; a partly written last frame is left out."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RecordingUnreadable("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    off = 12
    while off + 8 <= len(data):
        chunk, size = data[off:off + 4], struct.unpack_from("<I", data, off + 4)[0]
        body = off + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise RecordingUnreadable("fmt chunk too short")
            fmt = struct.unpack_from("<HHI", data, body)[:3] + (
                struct.unpack_from("<H", data, body + 14)[0],)
        elif chunk == b"data":
            if fmt is None:
                raise RecordingUnreadable("data before fmt")
            kind, channels, rate, bits = fmt
            if kind != 1 or channels < 1 or rate < 1 or bits not in (8, 16, 24, 32):
                raise RecordingUnreadable(f"not linear PCM (format {kind}, {bits} bits)")
            width = bits // 8
            frame = channels * width
            end = len(data) if size == 0 or body + size > len(data) else body + size
            usable = (end - body) // frame * frame
            want = int(seconds * rate) * frame
            start = body + max(0, usable - want)
            return PcmTail(rate, channels, width, data[start:body + usable])
        off = body + size + (size & 1)
    raise RecordingUnreadable("no data chunk")


def write_wav(path: Path, tail: PcmTail) -> None:
    """Write tail as a WAV file at path, atomically (a playback of the previous copy keeps
    reading its own file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(tail.channels)
        w.setsampwidth(tail.sample_width)
        w.setframerate(tail.rate)
        w.writeframes(tail.frames)
    os.replace(tmp, path)


def cut_copy(source: Path, target: Path, seconds: float) -> float:
    """Copy the last `seconds` of the recording at source to target; the seconds copied.
    Blocking file work: run it in a thread. Also sweeps stale copies beside target."""
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise RecordingUnreadable("no recording file") from None
    tail = pcm_tail(data, seconds)
    if not tail.frames:
        raise RecordingUnreadable("nothing recorded yet")
    write_wav(target, tail)
    _sweep(target.parent, keep=target)
    return tail.seconds


def _sweep(directory: Path, keep: Path, now: float | None = None) -> None:
    now = time.time() if now is None else now
    for old in directory.glob("*.wav"):
        try:
            if old != keep and now - old.stat().st_mtime > STALE_COPY_SECONDS:
                old.unlink()
        except OSError:
            continue


class Recall:
    """One call's instant recall, run in the call's session (operator_leg.py passes it the
    operator's `*6` and `#`, the API's commands and the playback's end)."""

    def __init__(self, call: CallSession) -> None:
        self.call = call
        self.playback_id: str | None = None
        self._n = 0

    @property
    def active(self) -> bool:
        return self.playback_id is not None

    def _paths(self) -> tuple[Path, Path, str]:
        rec = self.call.deps.settings.recording
        name = f"{self.call.call_id}.wav"
        return (rec.dir / name, rec.dir / RECALL_SUBDIR / name,
                f"sound:{rec.pbx_dir / RECALL_SUBDIR / self.call.call_id}")

    async def start(self, by: str) -> float:
        """Play the last seconds to the operator; the seconds played. A recall already playing
        starts again from now."""
        call = self.call
        channel = call.operator_channel
        if call.state is not CallState.CONNECTED or channel is None:
            raise CallNotConnected(call.call_id, call.state)
        settings = call.deps.settings.recording
        if not settings.enabled:
            raise NoRecording(call.call_id, "recording is off (recording.enabled)")
        if self.active:
            await self._stop_playback()
        source, copy, media = self._paths()
        try:
            seconds = await asyncio.to_thread(cut_copy, source, copy, settings.recall_seconds)
        except (RecordingUnreadable, OSError) as exc:
            log.warning("recall_no_recording", path=str(source), error=str(exc))
            raise NoRecording(call.call_id, str(exc)) from None
        self._n += 1
        playback_id = f"{call.call_id}-recall-{self._n}"
        await call.deps.ari.play(channel, media, playback_id=playback_id)
        self.playback_id = playback_id
        log.info("recall_started", seconds=round(seconds, 2), by=by, playback=playback_id)
        call.emit(CallEventType.RECALL, operator=call.operator, by=by,
                  seconds=round(seconds, 2))
        return seconds

    async def back(self, by: str) -> None:
        """'#' or the API: stop the recall, the operator is back in the call."""
        if not self.active:
            raise NotRecalling(self.call.call_id)
        await self._stop_playback()
        await self._ended(by, "returned")

    async def tell_refused(self) -> None:
        """The operator's *6 could not be done (nothing recorded yet): they hear "unknown
        code" on their own leg, as for any code that does nothing."""
        channel = self.call.operator_channel
        if channel is None:
            return
        try:
            await self.call.deps.ari.play(channel, "sound:siaga112/unknown-code")
        except AriError as exc:
            log.info("recall_prompt_failed", error=str(exc))

    async def playback_finished(self, playback_id: str) -> None:
        if playback_id == self.playback_id:
            await self._ended("system", "played")

    async def _stop_playback(self) -> None:
        playback_id, self.playback_id = self.playback_id, None
        if playback_id is None:
            return
        try:
            await self.call.deps.ari.stop_playback(playback_id)
        except AriError as exc:
            if not channel_gone(exc):  # 404: it had just finished
                raise

    async def _ended(self, by: str, reason: str) -> None:
        """The recall is over; then its copy goes (the call's audio is kept once, in the
        recording; a playback still reading the copy keeps its open file)."""
        self.playback_id = None
        log.info("recall_ended", by=by, reason=reason)
        self.call.emit(CallEventType.RECALL_RETURNED, operator=self.call.operator, by=by,
                       reason=reason)
        _, copy, _ = self._paths()
        try:
            await asyncio.to_thread(copy.unlink, missing_ok=True)
        except OSError as exc:
            log.warning("recall_copy_not_deleted", path=str(copy), error=str(exc))
