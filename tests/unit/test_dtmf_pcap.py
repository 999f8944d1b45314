"""The pcaps SIPp plays: parsed back, every digit a continuous RFC 4733 stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from siaga112_testkit.dtmf_pcap import (
    CLOCK_RATE,
    G711,
    SIPP_SHARE,
    TelephoneEvent,
    audio_packets,
    dtmf_filename,
    dtmf_packets,
    main,
    read_pcap,
    speech_samples,
    write_dtmf_pcap,
    write_pcap,
    write_silence_pcap,
    write_speech_pcap,
)


def test_code_is_one_stream_with_continuous_seq_and_timestamps(tmp_path: Path) -> None:
    path = write_dtmf_pcap(tmp_path, "*201", gap_ms=100)
    assert path.name == "dtmf_star201.pcap"
    packets = read_pcap(path)

    assert len(packets) == 4 * 8
    assert {p.payload_type for p in packets} == {101}
    assert len({p.ssrc for p in packets}) == 1
    seqs = [p.seq for p in packets]
    assert seqs == list(range(seqs[0], seqs[0] + 32))

    digits = [packets[i : i + 8] for i in range(0, 32, 8)]
    events = [[TelephoneEvent.from_bytes(p.payload) for p in d] for d in digits]
    assert [e[0].event for e in events] == [10, 2, 0, 1]
    stamps = [d[0].timestamp for d in digits]
    # 8 packets of 20 ms and a 100 ms gap between digits, on the 8 kHz RTP clock
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert steps == [260 * CLOCK_RATE // 1000] * 3
    for digit, evs in zip(digits, events, strict=True):
        assert {p.timestamp for p in digit} == {digit[0].timestamp}
        assert [p.marker for p in digit] == [True] + [False] * 7
        assert [e.end for e in evs] == [False] * 5 + [True] * 3
        durations = [e.duration for e in evs]
        assert durations[:5] == [160, 320, 480, 640, 800]
        assert durations[5:] == [960] * 3
        assert [round(p.at - digit[0].at, 3) for p in digit] == [k * 0.02 for k in range(8)]


def test_pcap_framing_matches_the_sip_tester_pcaps(tmp_path: Path) -> None:
    ours = tmp_path / "x.pcap"
    write_pcap(ours, dtmf_packets("1"))
    theirs = SIPP_SHARE / "dtmf_2833_1.pcap"
    # same global header (magic, version, snaplen, Ethernet link type)
    assert ours.read_bytes()[:24] == theirs.read_bytes()[:24]
    shipped = read_pcap(theirs)
    assert len(shipped) == 10
    assert TelephoneEvent.from_bytes(shipped[0].payload).event == 1
    assert TelephoneEvent.from_bytes(read_pcap(ours)[0].payload).event == 1


def test_bad_digit_and_empty_code_are_refused() -> None:
    with pytest.raises(ValueError, match="not a DTMF digit: 'x'"):
        dtmf_packets("*2x1")
    with pytest.raises(ValueError, match="empty"):
        dtmf_packets("")
    assert dtmf_filename("#9") == "dtmf_hash9.pcap"


def test_silence_pcap_is_silent_pcma_for_its_length(tmp_path: Path) -> None:
    packets = read_pcap(write_silence_pcap(tmp_path, 2))
    assert len(packets) == 100
    assert {p.payload_type for p in packets} == {G711.PCMA}
    assert {p.payload for p in packets} == {b"\xd5" * 160}
    assert packets[-1].at == pytest.approx(1.98)
    assert [p.timestamp - packets[0].timestamp for p in packets[:3]] == [0, 160, 320]


def test_speech_pcap_has_energy_all_along(tmp_path: Path) -> None:
    packets = read_pcap(write_speech_pcap(tmp_path, 10))
    assert len(packets) == 500
    silent = [p for p in packets if not p.payload.strip(b"\xd5")]
    assert silent == []
    assert len(speech_samples(1)) == CLOCK_RATE


def test_audio_tail_is_padded_with_the_codec_silence() -> None:
    packets = audio_packets(b"\x01" * 200, G711.PCMU)
    assert [len(p.payload) for p in packets] == [160, 160]
    assert packets[1].payload == b"\x01" * 40 + b"\xff" * 120


def test_cli_writes_the_standard_set(tmp_path: Path) -> None:
    assert main([str(tmp_path), "--seconds", "1", "--code", "#"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    for name in (
        "dtmf_star201.pcap",
        "dtmf_star214.pcap",
        "dtmf_star312.pcap",
        "dtmf_star7.pcap",
        "dtmf_star8.pcap",
        "dtmf_1.pcap",
        "dtmf_5.pcap",
        "dtmf_55.pcap",
        "dtmf_hash.pcap",
        "silence_1s.pcap",
        "speech_1s.pcap",
    ):
        assert name in names
