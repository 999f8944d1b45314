"""Pure logic of the instant recall (cutting the live recording's tail) and of the supervisor
codes (*51NN listen, *52NN whisper, *53NN barge): bad input is a clear refusal, never a crash."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from siaga112.call.recall import PcmTail, RecordingUnreadable, cut_copy, pcm_tail
from siaga112.supervision import Mode, Refused, Request, endpoint_of, parse_code

OPERATORS = [f"op{n}" for n in range(1, 9)]


def live_wav(samples: bytes, data_size: int = 0, rate: int = 8000) -> bytes:
    """A WAV as MixMonitor has it while recording: sizes still 0 in the header."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_size) + samples)


def test_tail_of_a_live_recording_runs_to_the_end_of_the_file() -> None:
    samples = bytes(range(256)) * 250  # 64000 bytes: 4 s of 16-bit 8 kHz mono
    tail = pcm_tail(live_wav(samples), seconds=1.5)
    assert tail == PcmTail(8000, 1, 2, samples[-24000:])
    assert tail.seconds == 1.5


def test_a_short_recording_is_played_whole_and_a_half_frame_is_left_out() -> None:
    samples = b"\x01\x02" * 800 + b"\x03"  # 0.1 s and half a frame still being written
    tail = pcm_tail(live_wav(samples), seconds=30)
    assert tail.frames == b"\x01\x02" * 800


def test_a_finished_recording_stops_at_its_data_size() -> None:
    samples = b"\x05\x00" * 8000
    data = live_wav(samples, data_size=len(samples)) + b"LIST\x04\x00\x00\x00abcd"
    assert pcm_tail(data, seconds=30).frames == samples


@pytest.mark.parametrize("data", [
    b"", b"RIFF", b"not a wav file at all", b"RIFF\x00\x00\x00\x00WAVE",
    b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00",  # data before fmt
    b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 6, 1, 8000,
                                                                 8000, 1, 8),  # A-law, no data
])
def test_what_is_not_a_pcm_wav_is_refused_by_name(data: bytes) -> None:
    with pytest.raises(RecordingUnreadable):
        pcm_tail(data, seconds=30)


def test_the_copy_is_a_wav_of_the_last_seconds(tmp_path: Path) -> None:
    source = tmp_path / "1.wav"
    source.write_bytes(live_wav(b"\x10\x00" * 8000 * 5))  # 5 s
    copy = tmp_path / "recall" / "1.wav"
    assert cut_copy(source, copy, seconds=2) == 2.0
    with wave.open(str(copy)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == 16000


def test_no_recording_yet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingUnreadable, match="no recording"):
        cut_copy(tmp_path / "missing.wav", tmp_path / "recall" / "x.wav", 30)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(live_wav(b""))
    with pytest.raises(RecordingUnreadable, match="nothing recorded"):
        cut_copy(empty, tmp_path / "recall" / "x.wav", 30)


@pytest.mark.parametrize(("code", "expected"), [
    ("*5101", Request(Mode.LISTEN, "op1")),
    ("*5205", Request(Mode.WHISPER, "op5")),
    ("*5308", Request(Mode.BARGE, "op8")),
])
def test_supervisor_codes(code: str, expected: Request) -> None:
    assert parse_code(code, OPERATORS) == expected


@pytest.mark.parametrize(("code", "why"), [
    ("*5199", "no operator 99"),
    ("*5100", "no operator 00"),
    ("*5109", "no operator 09"),
    ("*5401", r"\*54 is not a supervisor code"),
    ("*51", "not a supervisor code"),
    ("*51ab", "not a supervisor code"),
    ("*510", "not a supervisor code"),
    ("*51011", "not a supervisor code"),
    ("", "not a supervisor code"),
    ("*51\x0001", "not a supervisor code"),
    ("*5" + "1" * 5000, "not a supervisor code"),
])
def test_bad_supervisor_codes_are_refused_clearly(code: str, why: str) -> None:
    with pytest.raises(Refused, match=why) as refused:
        parse_code(code, OPERATORS)
    assert len(str(refused.value)) < 200  # a long input is not echoed back whole


def test_endpoint_of_a_channel_name() -> None:
    assert endpoint_of("PJSIP/sup1-0000001a") == "sup1"
    assert endpoint_of("garbage") == "garbage"
