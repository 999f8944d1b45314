"""What a SIPp phone heard, as far as the wire can tell: every RTP packet the PBX sends to a
loopback address, captured on `lo` with a packet socket (needs root, as `make test` runs), with
the loudness of its G.711 audio. SIPp itself does not report the RTP it receives.

    async with RtpMeter({"op1": "127.0.1.1", "citizen": "127.0.0.2"}) as meter:
        ...
        mark = meter.now()
        await asyncio.sleep(2)
        meter.loud("op1", since=mark)   # packets of audible audio op1 received since mark

Only packets to the given addresses are kept (not to port 5060: that is SIP), each with its
arrival time (the event loop's clock), payload type and mean absolute level (16-bit linear).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from types import TracebackType

ETH_P_ALL = 0x0003
PACKET_HOST = 0  # on lo every packet is seen twice: outgoing (4) and as received (0)
SIP_PORT = 5060
# Mean absolute level (16-bit linear) above which a packet is audible: A-law silence (0xD5)
# decodes to 8, comfort-noise-like hiss stays well under 100, the test speech is in thousands.
LOUD_LEVEL = 300


def _alaw_to_linear(byte: int) -> int:
    a = byte ^ 0x55
    sign = a & 0x80
    exponent = (a & 0x70) >> 4
    mantissa = a & 0x0F
    value = (mantissa << 4) + 8
    if exponent:
        value = (value + 0x100) << (exponent - 1)
    return value if sign else -value


def _ulaw_to_linear(byte: int) -> int:
    u = ~byte & 0xFF
    value = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - value) if u & 0x80 else (value - 0x84)


ALAW = [abs(_alaw_to_linear(b)) for b in range(256)]
ULAW = [abs(_ulaw_to_linear(b)) for b in range(256)]


@dataclass(frozen=True)
class Packet:
    at: float
    payload_type: int
    level: int  # mean absolute linear level; 0 for non-audio payloads


def level(payload_type: int, payload: bytes) -> int:
    table = ALAW if payload_type == 8 else ULAW if payload_type == 0 else None
    if table is None or not payload:
        return 0
    return sum(table[b] for b in payload) // len(payload)


class RtpMeter:
    def __init__(self, parties: dict[str, str]) -> None:
        self._by_ip = {socket.inet_aton(ip): name for name, ip in parties.items()}
        self.packets: dict[str, list[Packet]] = {name: [] for name in parties}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> RtpMeter:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise RuntimeError("the RTP meter needs root (a packet socket on lo), as make test "
                               "runs") from exc
        sock.bind(("lo", 0))
        sock.setblocking(False)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _read(self) -> None:
        assert self._sock is not None and self._loop is not None
        now = self._loop.time()
        while True:
            try:
                frame, addr = self._sock.recvfrom(2048)
            except BlockingIOError:
                return
            if addr[2] != PACKET_HOST:
                continue
            self._take(frame, now)

    def _take(self, frame: bytes, now: float) -> None:
        if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            return
        name = self._by_ip.get(frame[30:34])
        if name is None:
            return
        ihl = (frame[14] & 0x0F) * 4
        udp = 14 + ihl
        dst_port = struct.unpack_from("!H", frame, udp + 2)[0]
        rtp = frame[udp + 8:]
        if dst_port == SIP_PORT or len(rtp) < 12 or rtp[0] >> 6 != 2:
            return
        pt = rtp[1] & 0x7F
        self.packets[name].append(Packet(now, pt, level(pt, rtp[12:])))

    def received(self, name: str, since: float = 0.0, until: float = float("inf")) -> int:
        """Audio packets (G.711) the party received between since and until."""
        return sum(1 for p in self.packets[name]
                   if since <= p.at < until and p.payload_type in (0, 8))

    def loud(self, name: str, since: float = 0.0, until: float = float("inf")) -> int:
        """Audible audio packets the party received between since and until."""
        return sum(1 for p in self.packets[name]
                   if since <= p.at < until and p.payload_type in (0, 8)
                   and p.level >= LOUD_LEVEL)

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict[str, str]:
        """For assertion messages: per party, audible/all audio packets in the window."""
        return {name: f"{self.loud(name, since, until)}/{self.received(name, since, until)}"
                for name in self.packets}
