"""The notifier's MQTT connection (mqtt_wire.py): the packets it writes, the stream it cuts,
and what it does when a broker misbehaves. The broker here is a stand-in asyncio server that
speaks the bytes each test needs; tests/mqtt runs the connection against the real Mosquitto."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from tests.conftest import wait_for

from siaga112.model import CallEvent, CallEventType
from siaga112.mqtt_buffer import Message
from siaga112.mqtt_wire import (
    MAX_INBOUND,
    MAX_QUEUED,
    Connection,
    Framer,
    MqttError,
    ProtocolError,
    _length,
    connect,
    connect_packet,
    publish_packet,
)

WAIT = 5.0  # a guard against hanging, not a speed assertion


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _length(len(body)) + body


def test_remaining_lengths_are_encoded_as_mqtt_says() -> None:
    # MQTT 3.1.1, 2.2.3: the table's edges.
    assert _length(0) == b"\x00"
    assert _length(127) == b"\x7f"
    assert _length(128) == b"\x80\x01"
    assert _length(16_383) == b"\xff\x7f"
    assert _length(16_384) == b"\x80\x80\x01"
    assert _length(2_097_152) == b"\x80\x80\x80\x01"
    assert _length(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError, match="at most 268435455"):
        _length(268_435_456)


def test_connect_says_client_will_credentials_and_keepalive() -> None:
    raw = connect_packet("c1", "user", "pw", Message("p/status", b"offline", retain=True),
                         clean_session=False, keepalive=10)
    body = (b"\x00\x04MQTT\x04" + bytes((0x80 | 0x40 | 0x20 | 0x08 | 0x04,)) + b"\x00\x0a"
            + b"\x00\x02c1" + b"\x00\x08p/status" + b"\x00\x07offline"
            + b"\x00\x04user" + b"\x00\x02pw")
    assert raw == packet(0x10, body)
    bare = connect_packet("c1", None, None, None, clean_session=True, keepalive=30)
    assert bare == packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x1e\x00\x02c1")


def test_publish_is_qos_1_with_its_packet_id_and_retain_flag() -> None:
    assert publish_packet(Message("a/b", b"xyz"), 7) == packet(0x32, b"\x00\x03a/b\x00\x07xyz")
    assert publish_packet(Message("a/b", b"", retain=True), 65535)[0] == 0x33


def test_a_stream_cut_anywhere_gives_the_same_packets() -> None:
    big = bytes(range(256)) * 2  # a 2-byte remaining length
    stream = (packet(0x40, b"\x00\x01") + packet(0x30, b"\x00\x01t" + big)
              + packet(0xD0, b"") + packet(0x40, b"\x00\x02"))
    whole = Framer(MAX_INBOUND).feed(stream)
    assert [(first, len(body)) for first, body, _ in whole] == [(0x40, 2), (0x30, 515),
                                                                (0xD0, 0), (0x40, 2)]
    for cut in range(1, len(stream)):
        framer = Framer(MAX_INBOUND)
        assert framer.feed(stream[:cut]) + framer.feed(stream[cut:]) == whole, cut
    one_by_one = Framer(MAX_INBOUND)
    assert [p for i in range(len(stream)) for p in one_by_one.feed(stream[i : i + 1])] == whole


def test_a_packet_over_the_bound_is_read_past_and_the_next_one_still_comes() -> None:
    keep = 16
    stream = packet(0x30, b"\x00\x01t" + b"x" * 1000) + packet(0x40, b"\x00\x09")
    for cut in (3, 10, 19, 500, len(stream) - 3):
        framer = Framer(keep)
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == [(0x30, b"\x00\x01t" + b"x" * 13, 1003), (0x40, b"\x00\x09", 2)], cut
        assert len(framer._buf) == 0


def test_a_length_of_five_bytes_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="longer than 4 bytes"):
        Framer(MAX_INBOUND).feed(b"\x30\xff\xff\xff\xff\x01")


# -- against a stand-in broker ---------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, mult = 0, 1
    while True:
        digit = (await reader.readexactly(1))[0]
        length += (digit & 0x7F) * mult
        if not digit & 0x80:
            break
        mult *= 128
    return first, await reader.readexactly(length)


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first, _ = await read_packet(reader)
    assert first == 0x10
    writer.write(packet(0x20, b"\x00\x00"))


@pytest.fixture
async def broker() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    """broker(script) -> the port of a server that runs script for its one connection."""
    servers: list[asyncio.Server] = []
    done: list[asyncio.Task[None]] = []

    async def make(script: Script) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            done.append(task)
            try:
                await script(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield make
    for server in servers:
        server.close()
    for task in done:
        task.cancel()
    await asyncio.gather(*done, return_exceptions=True)


async def open_to(port: int, **kwargs: object) -> Connection:
    return await connect("127.0.0.1", port, client_id="t", **kwargs)  # type: ignore[arg-type]


async def test_nothing_listening_is_an_error_naming_the_address() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(MqttError, match=f"cannot connect to 127.0.0.1:{port}"):
        await open_to(port)


async def test_a_refused_connect_says_why(broker) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_packet(reader)
        writer.write(packet(0x20, b"\x00\x05"))
        await reader.read()

    with pytest.raises(MqttError, match="refused the connection: not authorized"):
        await open_to(await broker(refuse))


async def test_a_broker_that_never_says_connack_times_out(broker) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    with pytest.raises(MqttError, match="no CONNACK within 0.2 s"):
        await open_to(await broker(mute), timeout=0.2)


async def test_a_window_is_done_by_its_last_puback_and_earlier_ids_with_it(broker) -> None:
    """The broker acknowledges in order (MQTT 3.1.1, 4.6): one PUBACK of a later id covers
    the windows before it."""
    ids: list[int] = []
    ack_now = asyncio.Event()

    async def ack_last_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        for _ in range(5):
            first, body = await read_packet(reader)
            assert first & 0xF6 == 0x32  # PUBLISH at QoS 1
            (topic_len,) = struct.unpack_from("!H", body)
            ids.append(struct.unpack_from("!H", body, 2 + topic_len)[0])
        await ack_now.wait()
        writer.write(packet(0x40, struct.pack("!H", ids[-1])))
        await reader.read()

    conn = await open_to(await broker(ack_last_only))
    first = conn.publish([Message("t/1", b"a"), Message("t/2", b"b")])
    second = conn.publish([Message("t/3", b"c"), Message("t/4", b"d"), Message("t/5", b"e")])
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    ack_now.set()
    await asyncio.wait_for(asyncio.gather(first, second), WAIT)
    assert ids == [1, 2, 3, 4, 5]
    await conn.close()


async def test_a_window_in_flight_when_the_broker_goes_fails_and_so_does_receive(broker) -> None:
    async def vanish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        await read_packet(reader)  # the window's publish: never acknowledged

    conn = await open_to(await broker(vanish))
    window = conn.publish([Message("t", b"x")])
    with pytest.raises(MqttError, match="closed the connection"):
        await asyncio.wait_for(window, WAIT)
    with pytest.raises(MqttError):
        await asyncio.wait_for(conn.receive(), WAIT)
    failed = conn.publish([Message("t", b"y")])
    assert isinstance(failed.exception(), MqttError)


async def test_a_broker_that_stops_answering_pings_is_a_lost_connection(broker) -> None:
    pings: list[int] = []

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        while True:
            first, _ = await read_packet(reader)
            pings.append(first)

    conn = await open_to(await broker(deaf), keepalive=1, timeout=0.3)
    with pytest.raises(MqttError, match="no answer to a PINGREQ within 0.3 s"):
        await asyncio.wait_for(asyncio.shield(conn.lost), WAIT)
    assert pings[:1] == [0xC0]


async def test_an_answered_ping_keeps_the_connection(broker) -> None:
    pings = 0

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pings
        await accept(reader, writer)
        while True:
            first, _ = await read_packet(reader)
            if first == 0xC0:
                pings += 1
                writer.write(packet(0xD0, b""))

    conn = await open_to(await broker(answers), keepalive=1, timeout=0.3)
    await wait_for(lambda: pings >= 3, WAIT, "three pings answered")
    assert not conn.lost.done()
    await conn.close()


async def test_inbound_messages_are_acknowledged_and_one_too_large_is_read_past(broker) -> None:
    acks: list[bytes] = []

    async def agency(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        first, body = await read_packet(reader)
        assert first == 0x82  # SUBSCRIBE
        writer.write(packet(0x90, body[:2] + b"\x01"))
        huge = b"\x00\x07a/b/c/d\x00\x05" + b"z" * (MAX_INBOUND + 100)
        writer.write(packet(0x32, b"\x00\x07a/b/c/d\x00\x04{}") + packet(0x32, huge)
                     + packet(0x30, b"\x00\x01q" + b"qos0"))
        for _ in range(2):
            acks.append((await read_packet(reader))[1])
        await reader.read()

    conn = await open_to(await broker(agency))
    await conn.subscribe("a/+/c/d")
    got = [await asyncio.wait_for(conn.receive(), WAIT) for _ in range(3)]
    assert [(m.topic, m.payload, m.too_large) for m in got] == [
        ("a/b/c/d", b"{}", 0), ("a/b/c/d", b"", MAX_INBOUND + 111), ("q", b"qos0", 0)]
    await wait_for(lambda: len(acks) >= 2, WAIT, "both inbound messages acknowledged")
    assert acks == [b"\x00\x04", b"\x00\x05"]
    await conn.close()


async def test_a_refused_subscription_is_an_error(broker) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        _, body = await read_packet(reader)
        writer.write(packet(0x90, body[:2] + b"\x80"))
        await reader.read()

    conn = await open_to(await broker(refuse))
    with pytest.raises(MqttError, match="refused the subscription"):
        await conn.subscribe("x/#")
    await conn.close()


@pytest.mark.parametrize(
    ("garbage", "says"),
    [
        (packet(0xF0, b""), "unexpected packet of type 15"),
        (packet(0x40, b"\x00"), "PUBACK of 1 bytes"),
        (packet(0x34, b"\x00\x01t\x00\x01x"), "QoS 2"),
        (packet(0x32, b"\x00\x09t"), "too short"),
        (b"\x40\xff\xff\xff\xff\x01", "longer than 4 bytes"),
    ],
)
async def test_a_malformed_packet_ends_the_connection_naming_it(broker, garbage, says) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        await asyncio.sleep(0.05)
        writer.write(garbage)
        await reader.read()

    conn = await open_to(await broker(bad))
    with pytest.raises(ProtocolError, match=says):
        await asyncio.wait_for(asyncio.shield(conn.lost), WAIT)


async def test_a_flood_of_inbound_messages_waits_in_the_socket_not_in_memory(broker) -> None:
    """Past MAX_QUEUED messages not yet taken the connection stops reading (at most one read's
    packets more are queued); taking them reads on, and nothing is lost or reordered."""
    flood = 3 * MAX_QUEUED

    async def flooder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        for n in range(flood):
            writer.write(packet(0x30, b"\x00\x01f" + str(n).encode().ljust(1000)))
        await writer.drain()
        await reader.read()

    conn = await open_to(await broker(flooder))
    await wait_for(lambda: conn._paused, WAIT, "reading paused")
    await asyncio.sleep(0.1)  # were it still reading, the rest would come in now
    assert MAX_QUEUED <= conn.inbound.qsize() < flood
    got = [(await asyncio.wait_for(conn.receive(), WAIT)).payload for _ in range(flood)]
    assert got == [str(n).encode().ljust(1000) for n in range(flood)]
    await conn.close()


# -- the notifier over it, the broker failing at each step of a session ----------------------

DROP_AT = ["connect", "subscribe", "online", "mid-window"]


@pytest.mark.parametrize("drop_at", DROP_AT)
async def test_the_notifier_loses_nothing_whichever_step_the_broker_drops_at(drop_at) -> None:
    """The first session's broker goes at one step (before CONNACK, before SUBACK, before the
    online status's PUBACK, or with a window received and not acknowledged); the notifier
    reconnects, and every event emitted arrives in order (at least once: a window the broker
    may have had is sent again), with the status online."""
    from siaga112.notifier import MqttNotifier
    from siaga112.settings import MqttSettings

    sessions = 0
    taken: list[bytes] = []  # PUBLISH bodies the broker acknowledged, across sessions
    statuses: list[bytes] = []

    async def broker_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sessions
        sessions += 1
        first_one = sessions == 1
        await read_packet(reader)  # CONNECT
        if first_one and drop_at == "connect":
            return
        writer.write(packet(0x20, b"\x00\x00"))
        _, body = await read_packet(reader)  # SUBSCRIBE
        if first_one and drop_at == "subscribe":
            return
        writer.write(packet(0x90, body[:2] + b"\x01"))
        while True:
            first, body = await read_packet(reader)
            (topic_len,) = struct.unpack_from("!H", body)
            topic = body[2 : 2 + topic_len].decode()
            packet_id = body[2 + topic_len : 4 + topic_len]
            payload = body[4 + topic_len :]
            if topic.endswith("/status"):
                if first_one and drop_at == "online":
                    return
                statuses.append(payload)
            elif first_one and drop_at == "mid-window":
                return  # had the window's first message, acknowledged none
            else:
                taken.append(payload)
            writer.write(packet(0x40, packet_id))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await broker_session(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    notifier = MqttNotifier(MqttSettings(host="127.0.0.1", port=port, topic_prefix="p"),
                            reconnect_initial=0.02, reconnect_max=0.05, linger=0.0)
    sent = [CallEvent(call_id="c1", seq=n, type=CallEventType.QUEUED) for n in range(1, 6)]
    for event in sent:
        notifier.call_event(event)
    notifier.start()
    try:
        await wait_for(lambda: notifier.connected and notifier.pending == 0 and sessions >= 2,
                       WAIT, "everything published after the reconnect")
        got = [CallEvent.model_validate_json(p) for p in taken]
        firsts: dict[object, CallEvent] = {}
        for event in got:  # each event where it first arrived
            firsts.setdefault(event.event_id, event)
        assert list(firsts.values()) == sent
        assert statuses[-1] == b"online"
    finally:
        await notifier.stop(timeout=2.0)
        server.close()
