"""MqttNotifier against a real Mosquitto: order, reconnect, overflow, inbound agency updates."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import pytest
from mqtt_helpers import Subscriber, until
from structlog.testing import capture_logs

from siaga112.metrics import Metrics
from siaga112.model import (
    CallEvent,
    CallEventType,
    LineType,
    OperatorEvent,
    OperatorSnapshot,
    OperatorState,
    QueueEntry,
    QueueSnapshot,
    utcnow,
)
from siaga112.notifier import MqttNotifier
from siaga112.settings import MqttSettings
from siaga112_testkit.devstack.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration


def step(call_id: str, seq: int, type_: CallEventType = CallEventType.QUEUED, **data: Any):
    return CallEvent(call_id=call_id, seq=seq, type=type_, data=data)


def events(messages: list[aiomqtt.Message]) -> list[CallEvent]:
    return [CallEvent.model_validate_json(m.payload) for m in messages]  # type: ignore[arg-type]


def queue(length: int) -> QueueSnapshot:
    entries = [
        QueueEntry(
            call_id=f"q{i}", caller=None, line_type=LineType.MOBILE, since=utcnow(), priority=False
        )
        for i in range(length)
    ]
    return QueueSnapshot(length=length, entries=entries)


async def test_call_steps_arrive_in_order_once_on_the_call_and_agency_topics(
    prefix, subscribe, notifiers
) -> None:
    sub = await subscribe(f"{prefix}/calls/+/events", f"{prefix}/agencies/02/dispatches")
    notifier: MqttNotifier = notifiers(MqttSettings(topic_prefix=prefix))
    notifier.start()
    sent = [step("c1", n) for n in range(1, 41)]
    sent.append(step("c1", 41, CallEventType.AGENCY_REQUESTED, agency="02", dispatch_id="d1"))
    for event in sent:
        notifier.call_event(event)

    got = await sub.take(len(sent) + 1)  # the call's topic, plus one agency copy
    by_topic: dict[str, list[CallEvent]] = {}
    for message in got:
        by_topic.setdefault(message.topic.value, []).append(events([message])[0])
    assert by_topic[f"{prefix}/calls/c1/events"] == sent
    assert set(by_topic) == {f"{prefix}/calls/c1/events", f"{prefix}/agencies/02/dispatches"}
    assert by_topic[f"{prefix}/agencies/02/dispatches"] == [sent[-1]]


async def test_state_topics_are_retained_and_status_says_online(
    prefix, subscribe, notifiers
) -> None:
    notifier: MqttNotifier = notifiers(MqttSettings(topic_prefix=prefix))
    notifier.start()
    notifier.queue_changed(queue(2))
    notifier.operators_changed(
        [OperatorSnapshot(operator="op1", state=OperatorState.AVAILABLE, reachable=True)]
    )
    notifier.operator_event(OperatorEvent(operator="op1", state=OperatorState.AVAILABLE))
    await until(lambda: notifier.connected and notifier.pending == 0, "buffer flushed")

    late = await subscribe(f"{prefix}/queue", f"{prefix}/operators/+", f"{prefix}/status")
    got = {m.topic.value: m for m in await late.take(3)}
    assert all(m.retain for m in got.values())
    assert got[f"{prefix}/status"].payload == b"online"
    assert QueueSnapshot.model_validate_json(got[f"{prefix}/queue"].payload).length == 2  # type: ignore[arg-type]
    op = OperatorSnapshot.model_validate_json(got[f"{prefix}/operators/op1"].payload)  # type: ignore[arg-type]
    assert op.state is OperatorState.AVAILABLE


async def test_events_emitted_while_broker_is_down_arrive_in_order_after_reconnect(
    broker: MosquittoServer, prefix, subscribe, notifiers
) -> None:
    gate = asyncio.Event()
    waits: list[float] = []

    async def gated_sleep(seconds: float) -> None:
        waits.append(seconds)
        await gate.wait()

    notifier: MqttNotifier = notifiers(MqttSettings(topic_prefix=prefix), sleep=gated_sleep)
    notifier.start()
    notifier.call_event(step("c2", 1))
    await until(lambda: notifier.connected and notifier.pending == 0, "first event published")

    broker.stop()
    try:
        sent = [step("c2", n) for n in range(2, 30)]
        for event in sent:
            notifier.call_event(event)
        notifier.queue_changed(queue(1))
        notifier.queue_changed(queue(3))  # state: only the latest is kept
        await until(lambda: waits and not notifier.connected, "notifier waits to reconnect")
        assert notifier.pending == len(sent) + 1
    finally:
        broker.start()
    sub = await subscribe(f"{prefix}/calls/+/events", f"{prefix}/queue")
    gate.set()  # now the notifier may reconnect: the subscriber is listening

    got = await sub.take(len(sent) + 1)
    assert events(got[:-1]) == sent
    assert got[-1].topic.value == f"{prefix}/queue"
    assert QueueSnapshot.model_validate_json(got[-1].payload).length == 3  # type: ignore[arg-type]
    assert notifier.dropped == 0


async def test_overflow_drops_the_oldest_events_and_counts_them(
    prefix, subscribe, notifiers
) -> None:
    metrics = Metrics(process=False)
    notifier: MqttNotifier = notifiers(
        MqttSettings(topic_prefix=prefix, buffer_max=5), metrics=metrics
    )
    sub: Subscriber = await subscribe(f"{prefix}/calls/+/events")
    with capture_logs() as logs:
        for n in range(1, 13):  # not started: as when the broker is down
            notifier.call_event(step("c3", n))
        assert notifier.dropped == 7
        notifier.start()
        await until(lambda: notifier.connected and notifier.pending == 0, "buffer flushed")
        notifier.call_event(step("c3", 13))  # the sentinel: nothing else may come before it
        got = events(await sub.take(6))
    dropped_logs = [e for e in logs if e["event"] == "mqtt_events_dropped"]
    # Rate-limited: one line at the first drop, the rest summed up when the broker is back.
    assert [e["dropped"] for e in dropped_logs] == [1, 6]
    assert dropped_logs[-1]["dropped_total"] == 7
    assert b"siaga112_mqtt_dropped_total 7.0" in metrics.render()
    assert [e.seq for e in got] == [8, 9, 10, 11, 12, 13]


async def test_team_moving_reaches_the_callback_and_a_malformed_one_is_logged(
    prefix, subscribe, notifiers
) -> None:
    received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def on_team_moving(agency: str, payload: dict[str, Any]) -> None:
        received.put_nowait((agency, payload))

    notifier: MqttNotifier = notifiers(
        MqttSettings(topic_prefix=prefix), on_team_moving=on_team_moving
    )
    agency = await subscribe()
    with capture_logs() as logs:
        notifier.start()
        await until(lambda: notifier.connected, "notifier connected")
        # "online" is published once the notifier has subscribed to agencies' topics.
        status = await subscribe(f"{prefix}/status")
        assert (await status.take(1))[0].payload == b"online"
        await agency.publish(f"{prefix}/agencies/02/moving", b'{"call_id": "c4"}')
        await agency.publish(f"{prefix}/agencies/02/moving", b"not json")
        await agency.publish(
            f"{prefix}/agencies/02/moving", b'{"call_id": "c4", "dispatch_id": "d4"}'
        )
        async with asyncio.timeout(10):
            got = await received.get()
    assert got == ("02", {"call_id": "c4", "dispatch_id": "d4"})
    assert received.empty()
    malformed = [e for e in logs if e["event"] == "mqtt_team_moving_malformed"]
    assert [e["payload"] for e in malformed] == ['{"call_id": "c4"}', "not json"]
    assert malformed[0]["errors"][0]["loc"] == ("dispatch_id",)
    assert all(e["agency"] == "02" and e["log_level"] == "error" for e in malformed)


async def test_stop_flushes_the_buffer_then_says_offline(prefix, subscribe, notifiers) -> None:
    notifier: MqttNotifier = notifiers(MqttSettings(topic_prefix=prefix))
    notifier.start()
    for n in range(1, 11):
        notifier.call_event(step("c5", n))
    await notifier.stop(timeout=5.0)
    assert notifier.pending == 0
    late = await subscribe(f"{prefix}/status")
    assert (await late.take(1))[0].payload == b"offline"
