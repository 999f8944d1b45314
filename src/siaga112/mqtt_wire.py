"""The notifier's MQTT 3.1.1 connection: what it needs of the protocol and nothing else.

Connect (client id, credentials, a will, a persistent session), subscribe, publish QoS 1
messages a window at a time, take inbound QoS 0/1 messages, keep the connection alive.

Why not aiomqtt and paho: at 10 calls/s they were a fifth of the daemon's CPU (three
alternated pairs with MQTT on and off). paho reads every packet in three `recv` calls (the
type byte, the length, the rest) and handles each PUBACK through several layers of Python;
a window of twenty messages was twenty `send` calls. Here a window is one `write`, and a read
takes whatever the socket holds in one go.

The rules it keeps (MQTT 3.1.1):
- a broker acknowledges QoS 1 messages in the order it received them (4.6), so a window's
  future resolves when its last message's PUBACK is in;
- a client sends something within every keep-alive period (3.1.2.10); a PINGREQ whose
  PINGRESP (or any packet) does not come within `timeout` means the connection is dead;
- everything read is bounded: an inbound message over MAX_INBOUND bytes is read past,
  acknowledged and reported (never buffered whole); past MAX_QUEUED messages not yet taken
  the socket is not read until they are (the broker keeps the rest); a malformed packet ends
  the connection with a ProtocolError that names it. The caller reconnects.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

_T = TypeVar("_T")

MAX_INBOUND = 256 * 1024  # bytes of one inbound message kept; the rest is read past
MAX_QUEUED = 1000  # inbound messages not yet taken: past it the socket is not read until taken
MAX_REMAINING = 268_435_455  # the largest remaining length MQTT can say (4.1: 4 bytes of 7 bits)

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14

_REFUSED = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttError(Exception):
    """The connection failed, was refused or was lost; the caller reconnects."""


class ProtocolError(MqttError):
    """The broker sent something MQTT 3.1.1 does not allow."""


class Outgoing(Protocol):
    """A message to publish (the notifier's mqtt_buffer.Message is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def retain(self) -> bool: ...


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    too_large: int = 0  # the message's size when it was over MAX_INBOUND (payload is then empty)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"an MQTT string is at most 65535 bytes, this one is {len(raw)}")
    return struct.pack("!H", len(raw)) + raw


def _length(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"an MQTT packet's remaining length is at most {MAX_REMAINING}, not {n}")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes((kind << 4 | flags,)) + _length(len(body)) + body


def connect_packet(client_id: str, username: str | None, password: str | None,
                   will: Outgoing | None, clean_session: bool, keepalive: int) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | 0x08 | (0x20 if will.retain else 0)  # will, QoS 1, retain
        payload += _string(will.topic) + struct.pack("!H", len(will.payload)) + will.payload
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += struct.pack("!H", len(password.encode())) + password.encode()
    body = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive) + payload
    return _packet(CONNECT, 0, body)


def publish_packet(message: Outgoing, packet_id: int) -> bytes:
    """QoS 1."""
    body = _string(message.topic) + struct.pack("!H", packet_id) + message.payload
    return _packet(PUBLISH, 0x02 | (0x01 if message.retain else 0), body)


class Framer:
    """Cuts a byte stream into packets: (first byte, body). A body longer than `keep` is not
    kept: its first `keep` bytes come with the total length, the rest is read past."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._buf = bytearray()
        self._skip = 0  # bytes still to read past, of a packet too large to keep

    def feed(self, data: bytes) -> list[tuple[int, bytes, int]]:
        """-> [(first byte, body or its kept head, total body length)]"""
        out: list[tuple[int, bytes, int]] = []
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
        self._buf += data
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 2:
            first = buf[pos]
            length, mult, i, whole = 0, 1, pos + 1, False
            while i < len(buf) and i - pos <= 4:
                digit = buf[i]
                i += 1
                length += (digit & 0x7F) * mult
                if not digit & 0x80:
                    whole = True
                    break
                mult *= 128
            if not whole:
                if i - pos > 4:
                    raise ProtocolError("a remaining length longer than 4 bytes")
                break  # the rest of the length is still to come
            if length > self._keep:
                head_end = i + self._keep
                if len(buf) < head_end:
                    break  # wait for the head we keep
                out.append((first, bytes(buf[i:head_end]), length))
                rest = length - self._keep
                here = len(buf) - head_end
                if here >= rest:
                    pos = head_end + rest
                    continue
                self._skip = rest - here
                pos = len(buf)
                break
            end = i + length
            if end > len(buf):
                break
            out.append((first, bytes(buf[i:end]), length))
            pos = end
        if pos:
            del buf[:pos]
        return out


class Connection(asyncio.Protocol):
    """One connected MQTT session; `connect()` makes it. Every method is for the loop's
    thread. When the connection is lost, pending waits raise MqttError and `lost` is done."""

    def __init__(self, keepalive: float, timeout: float) -> None:
        self._keepalive = keepalive
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._framer = Framer(MAX_INBOUND)
        self._next_id = 0
        # Packet id -> the future of the window it ends (only a window's last id is here).
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._unacked: deque[int] = deque()  # every id sent and not acknowledged, in order
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[int]] = {}
        self.inbound: asyncio.Queue[Inbound] = asyncio.Queue()
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self._last_sent = time.monotonic()
        self._ping_due: float | None = None  # a PINGREQ went out: an answer must come by then
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._paused = False  # reading paused: MAX_QUEUED inbound messages wait to be taken

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._arm()

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._framer.feed(data)
            if packets:
                self._ping_due = None  # the broker is there
            for first, body, size in packets:
                self._packet(first, body, size)
        except MqttError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        why = "the broker closed the connection" if exc is None else f"connection lost: {exc}"
        self._fail(MqttError(why), close=False)

    # -- public --------------------------------------------------------------------------------

    def publish(self, messages: Iterable[Outgoing]) -> asyncio.Future[None]:
        """Send QoS 1 messages in one write; the future is done when the broker has them all
        (the last one's PUBACK), or fails with MqttError when the connection is lost."""
        future: asyncio.Future[None] = self._loop.create_future()
        if self.lost.done():
            future.set_exception(MqttError("not connected"))
            return future
        packets = []
        packet_id = 0
        for m in messages:
            packet_id = self._id()
            self._unacked.append(packet_id)
            packets.append(publish_packet(m, packet_id))
        if not packets:
            future.set_result(None)
            return future
        self._acks[packet_id] = future
        self._send(b"".join(packets))
        return future

    async def subscribe(self, topic: str) -> None:
        """QoS 1; refused by the broker raises MqttError."""
        packet_id = self._id()
        future: asyncio.Future[int] = self._loop.create_future()
        self._subacks[packet_id] = future
        self._send(_packet(SUBSCRIBE, 0x02, struct.pack("!H", packet_id) + _string(topic)
                           + b"\x01"))
        granted = await self._within(future, "SUBACK")
        if granted == 0x80:
            raise MqttError(f"the broker refused the subscription to {topic!r}")

    async def receive(self) -> Inbound:
        """The next inbound message; MqttError once the connection is lost."""
        if self._paused and self.inbound.qsize() <= MAX_QUEUED // 2 and not self.lost.done():
            self._paused = False
            if self._transport is not None:
                self._transport.resume_reading()
        if not self.inbound.empty():
            return self.inbound.get_nowait()
        getter = asyncio.ensure_future(self.inbound.get())
        either: set[asyncio.Future[Any]] = {getter, self.lost}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        self.lost.result()  # raises the reason
        raise MqttError("connection lost")

    async def close(self) -> None:
        """DISCONNECT (the broker then drops the will) and close."""
        if self._transport is not None and not self.lost.done():
            self._closing = True
            self._transport.write(_packet(DISCONNECT, 0, b""))
            self._transport.close()
        self._fail(MqttError("closed"), close=True)

    # -- inside --------------------------------------------------------------------------------

    async def _handshake(self, packet: bytes) -> None:
        self._send(packet)
        await self._within(self._connack, "CONNACK")

    async def _within(self, future: asyncio.Future[_T], what: str) -> _T:
        either: set[asyncio.Future[Any]] = {future, self.lost}
        await asyncio.wait(either, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        if self.lost.done():
            self.lost.result()
            raise MqttError("connection lost")
        exc = MqttError(f"no {what} within {self._timeout:g} s")
        self._fail(exc)
        raise exc

    def _id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def _send(self, data: bytes) -> None:
        if self._transport is None or self.lost.done():
            raise MqttError("not connected")
        self._transport.write(data)
        self._last_sent = time.monotonic()

    def _packet(self, first: int, body: bytes, size: int) -> None:
        kind = first >> 4
        if kind == PUBACK:
            self._puback(body)
        elif kind == PUBLISH:
            self._publish_in(first, body, size)
        elif kind == PINGRESP:
            pass
        elif kind == CONNACK:
            if len(body) != 2:
                raise ProtocolError(f"a CONNACK of {len(body)} bytes")
            if body[1] != 0:
                raise MqttError("the broker refused the connection: "
                                + _REFUSED.get(body[1], f"code {body[1]}"))
            if not self._connack.done():
                self._connack.set_result(None)
        elif kind == SUBACK:
            if len(body) < 3:
                raise ProtocolError(f"a SUBACK of {len(body)} bytes")
            (packet_id,) = struct.unpack_from("!H", body)
            waiter = self._subacks.pop(packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body[2])
        else:
            raise ProtocolError(f"an unexpected packet of type {kind}")

    def _puback(self, body: bytes) -> None:
        if len(body) != 2:
            raise ProtocolError(f"a PUBACK of {len(body)} bytes")
        (packet_id,) = struct.unpack("!H", body)
        if packet_id not in self._unacked:
            return  # a duplicate, or one of an earlier connection: nothing waits for it
        # In order (4.6): every id sent before it is acknowledged with it.
        while self._unacked:
            done = self._unacked.popleft()
            waiter = self._acks.pop(done, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if done == packet_id:
                break

    def _publish_in(self, first: int, body: bytes, size: int) -> None:
        qos = (first >> 1) & 0x03
        if qos > 1:
            raise ProtocolError(f"an inbound PUBLISH at QoS {qos}; we subscribed at QoS 1")
        if len(body) < 2:
            raise ProtocolError("a PUBLISH too short for its topic")
        (topic_len,) = struct.unpack_from("!H", body)
        head = 2 + topic_len + (2 if qos else 0)
        if len(body) < head:
            raise ProtocolError("a PUBLISH too short for its topic and packet id")
        topic = body[2 : 2 + topic_len].decode("utf-8", "replace")
        if qos:
            (packet_id,) = struct.unpack_from("!H", body, 2 + topic_len)
        too_large = size if size > len(body) else 0
        self.inbound.put_nowait(Inbound(topic, b"" if too_large else body[head:], too_large))
        if qos:
            self._send(_packet(PUBACK, 0, struct.pack("!H", packet_id)))
        if self.inbound.qsize() >= MAX_QUEUED and self._transport is not None:
            self._transport.pause_reading()  # a flood waits in the broker, not in our memory
            self._paused = True

    def _arm(self) -> None:
        self._timer = self._loop.call_later(min(self._keepalive / 2, self._timeout), self._tick)

    def _tick(self) -> None:
        if self.lost.done():
            return
        now = time.monotonic()
        if self._ping_due is not None and now > self._ping_due:
            self._fail(MqttError(f"no answer to a PINGREQ within {self._timeout:g} s"))
            return
        if self._ping_due is None and now - self._last_sent >= self._keepalive / 2:
            self._send(_packet(PINGREQ, 0, b""))
            self._ping_due = now + self._timeout
        self._arm()

    def _fail(self, exc: MqttError, close: bool = True) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.lost.done():
            self.lost.set_exception(exc)
            self.lost.exception()  # retrieved: nobody need wait for it
        waiters: list[asyncio.Future[Any]] = [*self._acks.values(), self._connack,
                                              *self._subacks.values()]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()
        self._acks.clear()
        self._subacks.clear()
        if close and self._transport is not None and not self._closing:
            self._closing = True
            self._transport.abort()


async def connect(host: str, port: int, *, client_id: str, username: str | None = None,
                  password: str | None = None, will: Outgoing | None = None,
                  clean_session: bool = False, keepalive: int = 10,
                  timeout: float = 10.0) -> Connection:  # noqa: ASYNC109 (the MQTT timeout)
    """A connected session (CONNACK accepted), or MqttError saying why not."""
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: Connection(keepalive, timeout), host, port),
            timeout)
    except (OSError, TimeoutError) as exc:
        raise MqttError(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from exc
    try:
        await conn._handshake(  # noqa: SLF001 (the module's own)
            connect_packet(client_id, username, password, will, clean_session, keepalive))
    except BaseException:
        await conn.close()
        raise
    return conn

