"""The notifier's own MQTT connection (mqtt_wire.py) against the real Mosquitto, read by an
independent client (aiomqtt): windows arrive whole and in order, the will is the broker's to
say when we vanish, and not said when we leave properly."""

from __future__ import annotations

import asyncio
import uuid

from mqtt_helpers import until

from siaga112.mqtt_buffer import Message
from siaga112.mqtt_wire import connect
from siaga112_testkit.devstack.mosquitto import MosquittoServer


async def test_windows_arrive_whole_and_in_order(broker: MosquittoServer, prefix,
                                                 subscribe) -> None:
    sub = await subscribe(f"{prefix}/w/#")
    conn = await connect(broker.host, broker.port, client_id=f"t-{uuid.uuid4().hex}")
    sent = [Message(f"{prefix}/w/{n % 3}", str(n).encode()) for n in range(200)]
    windows = [conn.publish(sent[i : i + 20]) for i in range(0, 200, 20)]
    await asyncio.wait_for(asyncio.gather(*windows), 10)
    got = await sub.take(200)
    assert [m.payload for m in got] == [m.payload for m in sent]
    assert [m.topic.value for m in got] == [m.topic for m in sent]
    await conn.close()


async def test_the_will_is_said_when_the_connection_vanishes_not_when_it_closes(
    broker: MosquittoServer, prefix, subscribe
) -> None:
    status = f"{prefix}/status"
    sub = await subscribe(status)
    will = Message(status, b"offline", retain=True)

    polite = await connect(broker.host, broker.port, client_id=f"t-{uuid.uuid4().hex}",
                           will=will)
    await polite.publish([Message(status, b"online", retain=True)])
    assert [m.payload for m in await sub.take(1)] == [b"online"]
    await polite.close()

    vanishing = await connect(broker.host, broker.port, client_id=f"t-{uuid.uuid4().hex}",
                              will=will)
    await until(lambda: sub.received.empty(), "nothing said by the polite close")
    await asyncio.sleep(0.2)  # the broker would have said the polite one's will by now
    assert sub.received.empty()
    assert vanishing._transport is not None
    vanishing._transport.abort()  # gone without DISCONNECT, as a killed daemon is
    got = await sub.take(1)
    assert (got[0].payload, got[0].retain) == (b"offline", False)  # live, to a subscriber
    late = await subscribe(status)
    assert [(m.payload, m.retain) for m in await late.take(1)] == [(b"offline", True)]
