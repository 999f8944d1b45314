"""RTP pcap files for SIPp's ``<exec play_pcap_audio="..."/>``: RFC 4733 (RFC 2833) DTMF codes
and G.711 audio (speech and silence) for the test phones.

SIPp replays the UDP payload of each captured packet with the capture's own pacing and rewrites
only addresses and ports: RTP sequence numbers and timestamps go out as written here. That is
why a code such as ``*201`` is one pcap with one RTP stream (continuous sequence numbers and
timestamps across its digits): the per-digit pcaps shipped in /usr/share/sip-tester each start
their own stream, and Asterisk took only the first digit when they were played back to back.

Each digit is 8 packets 20 ms apart (payload type 101, telephone-event/8000): five with growing
duration, then the end packet three times. Digits are ``gap_ms`` apart. Audio is G.711 A-law
(payload type 8) in 20 ms packets unless asked otherwise.

``python -m siaga112_testkit.dtmf_pcap OUTDIR`` writes the standard set the tests use.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

SIPP_SHARE = Path("/usr/share/sip-tester")
SIPP_SPEECH_PCAP = SIPP_SHARE / "g711a.pcap"

TELEPHONE_EVENT_PT = 101
CLOCK_RATE = 8000
PACKET_MS = 20
SAMPLES_PER_PACKET = CLOCK_RATE * PACKET_MS // 1000  # 160
PACKETS_PER_DIGIT = 8
END_PACKETS = 3
DEFAULT_GAP_MS = 100
DEFAULT_VOLUME = 10  # dBm0 below full power, as the sip-tester pcaps carry

EVENT_CODES = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}

# pcap framing: little-endian classic pcap, Ethernet link layer, IPv4, UDP, as the sip-tester
# pcaps are written. SIPp replaces the addresses and ports when it plays them.
_PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1
_ETH_HEADER = bytes.fromhex("0050bf990336000d8714ac240800")
_SRC_IP = bytes([192, 168, 0, 3])
_DST_IP = bytes([192, 168, 0, 1])
_SRC_PORT = 49176
_DST_PORT = 10000
_RTP_HEADER = struct.Struct("!BBHII")
_UDP_HEADER = struct.Struct("!HHHH")
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class G711(IntEnum):
    """G.711 codecs by their static RTP payload type."""

    PCMU = 0
    PCMA = 8

    @property
    def silence_byte(self) -> int:
        return 0xFF if self is G711.PCMU else 0xD5


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet and when it is sent, in seconds from the start of the capture."""

    at: float
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        header = _RTP_HEADER.pack(
            0x80,  # version 2, no padding, no extension, no CSRC
            (0x80 if self.marker else 0) | self.payload_type,
            self.seq & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        return header + self.payload

    @classmethod
    def from_bytes(cls, at: float, data: bytes) -> RtpPacket:
        if len(data) < _RTP_HEADER.size or data[0] >> 6 != 2:
            raise ValueError(f"not an RTP version 2 packet: {data[:12].hex()}")
        _vpxcc, mpt, seq, ts, ssrc = _RTP_HEADER.unpack_from(data)
        return cls(
            at=at,
            payload_type=mpt & 0x7F,
            seq=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=data[_RTP_HEADER.size :],
            marker=bool(mpt & 0x80),
        )


@dataclass(frozen=True)
class TelephoneEvent:
    """The payload of an RFC 4733 telephone-event packet."""

    event: int
    end: bool
    volume: int
    duration: int

    def to_bytes(self) -> bytes:
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TelephoneEvent:
        if len(data) != 4:
            raise ValueError(f"telephone-event payload must be 4 bytes, got {len(data)}")
        event, flags, duration = struct.unpack("!BBH", data)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


def event_code(digit: str) -> int:
    try:
        return EVENT_CODES[digit.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r} (use 0-9, *, #, A-D)") from None


def dtmf_packets(
    code: str,
    *,
    gap_ms: int = DEFAULT_GAP_MS,
    first_seq: int = 1000,
    first_timestamp: int = 16000,
    ssrc: int = 0x51A6A112,
) -> list[RtpPacket]:
    """The RTP packets of `code` (e.g. "*201") as one stream: 8 packets of 20 ms per digit, the
    last three with the end bit, digits `gap_ms` apart."""
    if not code:
        raise ValueError("DTMF code is empty")
    if gap_ms < 0:
        raise ValueError(f"gap_ms must be >= 0, got {gap_ms}")
    events = [event_code(d) for d in code]
    packets: list[RtpPacket] = []
    seq = first_seq
    digit_ms = PACKETS_PER_DIGIT * PACKET_MS + gap_ms
    end_duration = (PACKETS_PER_DIGIT - END_PACKETS + 1) * SAMPLES_PER_PACKET
    for i, event in enumerate(events):
        start_ms = i * digit_ms
        timestamp = first_timestamp + start_ms * CLOCK_RATE // 1000
        for k in range(PACKETS_PER_DIGIT):
            end = k >= PACKETS_PER_DIGIT - END_PACKETS
            duration = end_duration if end else (k + 1) * SAMPLES_PER_PACKET
            payload = TelephoneEvent(event, end, DEFAULT_VOLUME, duration).to_bytes()
            packets.append(
                RtpPacket(
                    at=(start_ms + k * PACKET_MS) / 1000,
                    payload_type=TELEPHONE_EVENT_PT,
                    seq=seq,
                    timestamp=timestamp,
                    ssrc=ssrc,
                    payload=payload,
                    marker=k == 0,
                )
            )
            seq += 1
    return packets


def audio_packets(
    samples: bytes,
    codec: G711 = G711.PCMA,
    *,
    first_seq: int = 2000,
    first_timestamp: int = 32000,
    ssrc: int = 0xA0D10112,
) -> list[RtpPacket]:
    """G.711 bytes (one byte a sample) cut into 20 ms RTP packets; a short tail is padded with
    silence."""
    if not samples:
        raise ValueError("no audio samples")
    packets = []
    for n, off in enumerate(range(0, len(samples), SAMPLES_PER_PACKET)):
        chunk = samples[off : off + SAMPLES_PER_PACKET]
        chunk += bytes([codec.silence_byte]) * (SAMPLES_PER_PACKET - len(chunk))
        packets.append(
            RtpPacket(
                at=n * PACKET_MS / 1000,
                payload_type=int(codec),
                seq=first_seq + n,
                timestamp=first_timestamp + n * SAMPLES_PER_PACKET,
                ssrc=ssrc,
                payload=chunk,
                marker=n == 0,
            )
        )
    return packets


def silence_samples(seconds: float, codec: G711 = G711.PCMA) -> bytes:
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return bytes([codec.silence_byte]) * int(seconds * CLOCK_RATE)


def speech_samples(seconds: float, source: Path = SIPP_SPEECH_PCAP) -> bytes:
    """`seconds` of A-law speech: the speech in SIPp's g711a.pcap (7 s, PCMA), its silent
    packets left out, looped."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    voiced = b"".join(
        p.payload
        for p in read_pcap(source)
        if p.payload_type == G711.PCMA and p.payload.strip(bytes([G711.PCMA.silence_byte]))
    )
    if not voiced:
        raise ValueError(f"{source} holds no PCMA speech")
    need = int(seconds * CLOCK_RATE)
    return (voiced * (need // len(voiced) + 1))[:need]


def _ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(rtp: bytes, ip_id: int) -> bytes:
    udp = _UDP_HEADER.pack(_SRC_PORT, _DST_PORT, _UDP_HEADER.size + len(rtp), 0) + rtp
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ip_id & 0xFFFF, 0, 64, 17, 0, _SRC_IP, _DST_IP
        )
    )
    struct.pack_into("!H", ip, 10, _ipv4_checksum(bytes(ip)))
    return _ETH_HEADER + bytes(ip) + udp


def write_pcap(path: Path, packets: Iterable[RtpPacket], epoch: int = 1_700_000_000) -> Path:
    """Write packets as a pcap SIPp can play; returns path."""
    out = bytearray(_PCAP_HEADER.pack(_PCAP_MAGIC, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET))
    for n, pkt in enumerate(packets):
        frame = _frame(pkt.to_bytes(), n)
        usec_total = round(pkt.at * 1_000_000)
        out += _RECORD_HEADER.pack(
            epoch + usec_total // 1_000_000, usec_total % 1_000_000, len(frame), len(frame)
        )
        out += frame
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bytes(out))
    tmp.replace(path)
    return path


def read_pcap(path: Path) -> list[RtpPacket]:
    """The RTP packets of an Ethernet/IPv4/UDP pcap such as those SIPp plays, `at` relative to
    the first packet."""
    data = path.read_bytes()
    if len(data) < _PCAP_HEADER.size:
        raise ValueError(f"{path}: too short for a pcap file")
    magic, _maj, _min, _tz, _sig, _snap, linktype = _PCAP_HEADER.unpack_from(data)
    if magic != _PCAP_MAGIC or linktype != _LINKTYPE_ETHERNET:
        raise ValueError(
            f"{path}: not a little-endian Ethernet pcap (magic {magic:#x}, link type {linktype})"
        )
    packets: list[RtpPacket] = []
    off = _PCAP_HEADER.size
    first: float | None = None
    while off + _RECORD_HEADER.size <= len(data):
        sec, usec, caplen, _origlen = _RECORD_HEADER.unpack_from(data, off)
        frame = data[off + _RECORD_HEADER.size : off + _RECORD_HEADER.size + caplen]
        off += _RECORD_HEADER.size + caplen
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue  # not IPv4/UDP
        ihl = (frame[14] & 0x0F) * 4
        udp_len = struct.unpack_from("!H", frame, 14 + ihl + 4)[0]
        rtp = frame[14 + ihl + _UDP_HEADER.size : 14 + ihl + udp_len]
        t = sec + usec / 1_000_000
        first = t if first is None else first
        packets.append(RtpPacket.from_bytes(round(t - first, 6), rtp))
    return packets


def dtmf_filename(code: str) -> str:
    """File name for a code's pcap: "*201" -> "dtmf_star201.pcap", "#" -> "dtmf_hash.pcap"."""
    for digit in code:
        event_code(digit)
    return "dtmf_" + code.replace("*", "star").replace("#", "hash") + ".pcap"


def write_dtmf_pcap(outdir: Path, code: str, gap_ms: int = DEFAULT_GAP_MS) -> Path:
    return write_pcap(outdir / dtmf_filename(code), dtmf_packets(code, gap_ms=gap_ms))


def write_silence_pcap(outdir: Path, seconds: int, codec: G711 = G711.PCMA) -> Path:
    return write_pcap(
        outdir / f"silence_{seconds}s.pcap", audio_packets(silence_samples(seconds, codec), codec)
    )


def write_speech_pcap(outdir: Path, seconds: int) -> Path:
    return write_pcap(outdir / f"speech_{seconds}s.pcap", audio_packets(speech_samples(seconds)))


# Desk-phone codes sent in a call (TEST-PBX.md), and the citizens' keys: 1 (agency accepts),
# 5 (blocked caller's way through), 55 (silent caller's keys).
STANDARD_CODES: tuple[str, ...] = (
    *(f"*2{nn:02d}" for nn in range(1, 15)),
    *(f"*3{cc:02d}" for cc in range(1, 13)),
    "*7",
    "*8",
    "1",
    "5",
    "55",
)
STANDARD_SECONDS: tuple[int, ...] = (10, 30, 60)


def write_standard_set(outdir: Path, seconds: Sequence[int] = STANDARD_SECONDS) -> list[Path]:
    """Every pcap the tests use: one per code in STANDARD_CODES, silence_Ns and speech_Ns."""
    written = [write_dtmf_pcap(outdir, code) for code in STANDARD_CODES]
    for s in seconds:
        written.append(write_silence_pcap(outdir, s))
        written.append(write_speech_pcap(outdir, s))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m siaga112_testkit.dtmf_pcap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument(
        "--code", action="append", default=[], help="also write this DTMF code (repeatable)"
    )
    parser.add_argument(
        "--seconds",
        type=int,
        action="append",
        help="silence/speech lengths in seconds (default 10, 30, 60)",
    )
    args = parser.parse_args(argv)
    written = write_standard_set(args.outdir, args.seconds or STANDARD_SECONDS)
    written += [write_dtmf_pcap(args.outdir, code) for code in args.code]
    print(f"wrote {len(written)} pcaps to {args.outdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
