"""A real Mosquitto for the MQTT tests: the dev broker on 127.0.0.1:1883 from ensure_mosquitto.

Each test gets its own topic prefix, so retained state of one test never reaches another.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest
from mqtt_helpers import Subscriber

from siaga112.notifier import MqttNotifier
from siaga112.settings import MqttSettings
from siaga112_testkit.devstack.mosquitto import MosquittoServer, ensure_mosquitto

STATE_DIR = Path(__file__).resolve().parents[2] / "var"
PORT = 1883


@pytest.fixture(scope="session")
def broker() -> Iterator[MosquittoServer]:
    was_running = MosquittoServer(STATE_DIR, PORT).running
    server = ensure_mosquitto(STATE_DIR, PORT)
    yield server
    if not was_running:
        server.stop()
    else:
        server.start()  # a test may have stopped it: leave it as we found it


@pytest.fixture
def prefix() -> str:
    return f"siaga112-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def subscribe(broker: MosquittoServer) -> AsyncIterator[Callable[..., Awaitable[Subscriber]]]:
    """subscribe(*filters) -> a connected Subscriber; all are disconnected after the test."""
    opened: list[tuple[aiomqtt.Client, asyncio.Task[None]]] = []

    async def make(*filters: str) -> Subscriber:
        client = aiomqtt.Client(broker.host, broker.port, identifier=f"test-{uuid.uuid4().hex}")
        await client.__aenter__()
        sub = Subscriber(client)
        for topic in filters:
            await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in client.messages:
                sub.received.put_nowait(message)

        opened.append((client, asyncio.create_task(read())))
        return sub

    yield make
    for client, reader in opened:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        try:
            await client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass  # the broker went away under it: nothing left to close


@pytest.fixture
async def notifiers() -> AsyncIterator[Callable[..., MqttNotifier]]:
    """notifiers(settings, **kwargs) -> an MqttNotifier (not started); all stopped after."""
    made: list[MqttNotifier] = []

    def make(settings: MqttSettings, **kwargs: object) -> MqttNotifier:
        kwargs.setdefault("reconnect_initial", 0.05)
        kwargs.setdefault("reconnect_max", 0.2)
        notifier = MqttNotifier(settings, **kwargs)  # type: ignore[arg-type]
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.stop(timeout=2.0)
