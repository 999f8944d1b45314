"""Helpers of the MQTT tests (a module of its own: conftest is not for importing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt

WAIT = 10.0  # a guard against hanging, not a speed assertion


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a condition of a background task; fail naming it rather than hang."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 (polls state that has no event to await)
            await asyncio.sleep(0.01)
    assert predicate(), what


@dataclass
class Subscriber:
    """A plain MQTT client that records what it receives on its filters."""

    client: aiomqtt.Client
    received: asyncio.Queue[aiomqtt.Message] = field(default_factory=asyncio.Queue)

    async def take(self, count: int) -> list[aiomqtt.Message]:
        async with asyncio.timeout(WAIT):
            return [await self.received.get() for _ in range(count)]

    async def publish(self, topic: str, payload: bytes) -> None:
        await self.client.publish(topic, payload, qos=1)
