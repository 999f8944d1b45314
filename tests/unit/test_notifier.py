"""The notifier's buffer rule and topic tree, without a broker (tests/mqtt/ has the broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import pytest
from structlog.testing import capture_logs
from tests.fakes import FakeAri, ListSink

from siaga112.metrics import Metrics
from siaga112.model import (
    CallEvent,
    CallEventType,
    OperatorEvent,
    OperatorSnapshot,
    OperatorState,
    QueueSnapshot,
)
from siaga112.mqtt_buffer import Message, OutBuffer, Topics
from siaga112.mqtt_wire import MqttError
from siaga112.notifier import MqttNotifier, NullNotifier
from siaga112.operators import OperatorDesk
from siaga112.settings import MqttSettings
from siaga112.sinks import EventSink


def msg(topic: str, body: str = "", retain: bool = False) -> Message:
    return Message(topic, body.encode(), retain)


def topics_of(buffer: OutBuffer) -> list[list[str]]:
    return [[m.topic for m in e.messages] for e in buffer.head(1000)]


def test_buffer_keeps_order_across_events_and_state() -> None:
    b = OutBuffer(max_events=10)
    b.add_event((msg("e1"),))
    b.set_state(msg("queue", "1", True))
    b.add_event((msg("e2"),))
    assert topics_of(b) == [["e1"], ["queue"], ["e2"]]


def test_state_is_coalesced_to_its_latest_value_at_its_latest_place() -> None:
    b = OutBuffer(max_events=10)
    b.set_state(msg("queue", "1", True))
    b.add_event((msg("e1"),))
    b.set_state(msg("queue", "2", True))
    assert topics_of(b) == [["e1"], ["queue"]]
    assert b.head(10)[1].messages[0].payload == b"2"


def test_overflow_drops_the_oldest_events_never_state() -> None:
    b = OutBuffer(max_events=2)
    b.set_state(msg("queue", "1", True))
    assert [b.add_event((msg(f"e{n}"),)) for n in range(1, 5)] == [0, 0, 1, 1]
    assert topics_of(b) == [["queue"], ["e3"], ["e4"]]


def test_remove_spares_what_was_superseded_while_in_flight() -> None:
    b = OutBuffer(max_events=10)
    b.set_state(msg("queue", "1", True))
    b.add_event((msg("e1"),))
    in_flight = b.head(10)
    b.set_state(msg("queue", "2", True))  # arrives while the batch awaits its PUBACKs
    b.remove(in_flight)
    assert [e.messages[0].payload for e in b.head(10)] == [b"2"]


def test_call_event_goes_to_its_call_once_and_to_its_agency() -> None:
    n = MqttNotifier(MqttSettings(topic_prefix="p"))
    n.call_event(CallEvent(call_id="c1", seq=1, type=CallEventType.QUEUED))
    n.call_event(
        CallEvent(call_id="c1", seq=2, type=CallEventType.AGENCY_JOINED, data={"agency": "02"})
    )
    assert topics_of(n._buffer) == [
        ["p/calls/c1/events"],
        ["p/calls/c1/events", "p/agencies/02/dispatches"],
    ]
    assert n.topics.all_calls == "p/calls/+/events"  # what subscribes to every call


def test_state_and_operator_topics() -> None:
    n = MqttNotifier(MqttSettings(topic_prefix="p"))
    n.queue_changed(QueueSnapshot(length=0, entries=[]))
    n.operators_changed(
        [OperatorSnapshot(operator="op1", state=OperatorState.PAUSED, reachable=True)]
    )
    n.operator_event(OperatorEvent(operator="op1", state=OperatorState.PAUSED))
    entries = n._buffer.head(10)
    assert [(m.topic, m.retain) for e in entries for m in e.messages] == [
        ("p/queue", True),
        ("p/operators/op1", True),
        ("p/events/operators", False),
    ]


def test_a_call_id_that_is_no_topic_level_still_reaches_the_all_calls_stream() -> None:
    n = MqttNotifier(MqttSettings(topic_prefix="p"))
    with capture_logs() as logs:
        n.call_event(CallEvent(call_id="a/b+", seq=1, type=CallEventType.QUEUED))
        n.call_event(CallEvent(call_id="a/b+", seq=2, type=CallEventType.ENDED))
        n.call_event(CallEvent(call_id="a/b#", seq=1, type=CallEventType.QUEUED))
    first, second, other = topics_of(n._buffer)
    assert first == second and first != other  # one stand-in per call id, the same each time
    prefix, level, suffix = first[0].split("/")[0], first[0].split("/")[2], first[0].split("/")[3:]
    assert (prefix, first[0].split("/")[1], suffix) == ("p", "calls", ["events"])
    assert level.startswith("invalid-") and "+" not in level and "#" not in level
    assert [e["event"] for e in logs] == ["mqtt_bad_topic_level"] * 3


def test_agency_of_moving_topic() -> None:
    t = Topics("siaga112/")
    assert t.agency_of_moving("siaga112/agencies/04/moving") == "04"
    assert t.agency_of_moving("siaga112/agencies/04/x/moving") is None
    assert t.agency_of_moving("siaga112/queue") is None


def test_both_notifiers_are_event_sinks() -> None:
    """The same calls work on both: the MQTT notifier keeps the event for the broker (it is
    not started here), the null one takes it and keeps nothing."""
    null, mqtt = NullNotifier(), MqttNotifier(MqttSettings(topic_prefix="p"))
    sinks: list[EventSink] = [null, mqtt]
    event = OperatorEvent(operator="op1", state=OperatorState.AVAILABLE)
    call = CallEvent(call_id="1700000000.1", seq=1, type=CallEventType.ARRIVED)
    for sink in sinks:
        sink.operator_event(event)
        sink.call_event(call)
    assert mqtt.pending == 2
    assert topics_of(mqtt._buffer)[0][0].startswith("p/")
    assert null.dropped == 0 and not hasattr(null, "_buffer")


def test_an_agency_event_without_an_agency_code_still_reaches_the_call_topics() -> None:
    n = MqttNotifier(MqttSettings(topic_prefix="p"))
    n.call_event(CallEvent(call_id="c1", seq=1, type=CallEventType.OVERDUE, data={}))
    assert topics_of(n._buffer) == [["p/calls/c1/events"]]


def test_a_complaint_overdue_has_no_agency_topic_and_is_no_error() -> None:
    n = MqttNotifier(MqttSettings(topic_prefix="p"))
    with capture_logs() as logs:
        n.call_event(CallEvent(call_id="c1", seq=0, type=CallEventType.OVERDUE,
                               data={"kind": "complaint", "complaint_id": 7}))
        n.call_event(CallEvent(call_id="c1", seq=0, type=CallEventType.OVERDUE,
                               data={"kind": "moving", "agency": "0/1"}))
    assert topics_of(n._buffer) == [["p/calls/c1/events"], ["p/calls/c1/events"]]
    assert [e["event"] for e in logs] == ["mqtt_bad_agency_code"]  # only the bad code


def test_state_that_says_nothing_new_is_not_sent_again() -> None:
    n = MqttNotifier(MqttSettings(topic_prefix="p"))
    ops = [OperatorSnapshot(operator=f"op{i}", state=OperatorState.AVAILABLE, reachable=True)
           for i in (1, 2)]
    n.operators_changed(ops)
    n.queue_changed(QueueSnapshot(length=0, entries=[]))
    n._buffer.remove(n._buffer.head(10))  # published
    # A burst: op1 rings, the queue snapshot is taken again (a new `at`, nothing else new).
    for _ in range(50):
        n.operators_changed([ops[0].model_copy(update={"state": OperatorState.RINGING}), ops[1]])
        n.queue_changed(QueueSnapshot(length=0, entries=[]))
    assert topics_of(n._buffer) == [["p/operators/op1"]]


async def test_a_desk_change_publishes_that_operator_only_and_every_field_shows() -> None:
    """The desk snapshots every operator on each change; an operator whose snapshot says the
    same is given as the same object, and the notifier does not serialise it again."""
    desk = OperatorDesk([f"op{i}" for i in range(8)], FakeAri(), ListSink(), wrapup=0,
                        start_logged_in=True, on_change=lambda: None)
    n = MqttNotifier(MqttSettings(topic_prefix="p"))
    first = desk.snapshot()
    n.operators_changed(first)
    assert len(topics_of(n._buffer)) == 8
    n._buffer.remove(n._buffer.head(10))

    def published_after(change: Callable[[], None] | None) -> list[list[str]]:
        if change is not None:
            change()
        ops = desk.snapshot()
        for op in ops:  # what a snapshot says is the operator now, whatever was reused
            o = desk.get(op.operator)
            assert o is not None
            fresh = OperatorSnapshot(
                operator=o.name, state=o.state, reachable=o.reachable, reason=o.reason,
                call_id=o.call_id,
                idle_since=o.idle_since_wall if o.state is OperatorState.AVAILABLE else None)
            assert op == fresh, change
        n.operators_changed(ops)
        out = topics_of(n._buffer)
        n._buffer.remove(n._buffer.head(10))
        return out

    op1, op2, op3 = (["p/operators/op1"],), (["p/operators/op2"],), (["p/operators/op3"],)
    for change, topics in [
        (lambda: desk.ringing("op1", "c1"), op1),
        (lambda: desk.connected("op1", "c1"), op1),
        (lambda: desk.released("op1", "c1"), op1),  # idle_since
        (lambda: desk.choose("op2", OperatorState.PAUSED, "break", True), op2),
        (lambda: desk.choose("op2", OperatorState.PAUSED, "lunch", True), op2),  # reason alone
        (lambda: desk.reachability("op3", "UNAVAILABLE"), op3),
    ]:
        assert published_after(change) == list(topics)
    assert published_after(None) == []  # nothing changed: nothing serialised or sent
    assert all(a is b for a, b in zip(first[4:], desk.snapshot()[4:], strict=True))


async def test_an_event_after_stop_is_counted_as_dropped() -> None:
    metrics = Metrics(process=False)
    n = MqttNotifier(MqttSettings(topic_prefix="p"), metrics=metrics)
    await n.stop()
    with capture_logs() as logs:
        n.call_event(CallEvent(call_id="c1", seq=9, type=CallEventType.RECORDING))
    assert (n.dropped, n.pending) == (1, 0)
    assert [e["event"] for e in logs] == ["mqtt_event_after_stop"]
    assert b"siaga112_mqtt_dropped_total 1.0" in metrics.render()


class WindowClient:
    """Stands in for mqtt_wire.Connection in the publish loop: each window's messages go out
    together, and each notes how many entries were buffered then (all of one window are sent
    before any is removed). `lost` fails every window as the connection would."""

    def __init__(self, notifier: MqttNotifier, lost: bool = False) -> None:
        self.notifier = notifier
        self.seen: list[tuple[str, int]] = []
        self.lost = lost

    def publish(self, messages: Iterable[Message]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.lost:
            future.set_exception(MqttError("not connected"))
            return future
        self.seen.extend((m.topic, self.notifier.pending) for m in messages)
        future.set_result(None)
        return future


async def _three_events_5_ms_apart(linger: float) -> list[tuple[str, int]]:
    n = MqttNotifier(MqttSettings(topic_prefix="p"), linger=linger)
    client = WindowClient(n)
    reader: asyncio.Task[None] = asyncio.create_task(asyncio.sleep(3600))
    loop = asyncio.create_task(n._publish_loop(client, reader))  # type: ignore[arg-type]
    for seq in (1, 2, 3):
        n.call_event(CallEvent(call_id=f"c{seq}", seq=seq, type=CallEventType.QUEUED))
        await asyncio.sleep(0.005)
    await asyncio.sleep(linger + 0.05)
    n._stopping = True
    n._wake.set()
    await asyncio.wait_for(loop, 2)
    reader.cancel()
    assert n.pending == 0
    return client.seen


async def test_a_window_lingers_for_the_events_right_behind_it() -> None:
    """Every window costs a write, a PUBACK read and the loop's wake-ups: the loop waits
    `linger` for a fuller window."""
    seen = await _three_events_5_ms_apart(linger=0.05)
    assert seen == [("p/calls/c1/events", 3), ("p/calls/c2/events", 3), ("p/calls/c3/events", 3)]


async def test_without_linger_each_event_goes_at_once() -> None:
    seen = await _three_events_5_ms_apart(linger=0.0)
    assert seen == [("p/calls/c1/events", 1), ("p/calls/c2/events", 1), ("p/calls/c3/events", 1)]


async def test_a_window_sent_as_the_connection_goes_stays_buffered_to_be_sent_again() -> None:
    """The connection is gone as a window goes out: the session ends with an MqttError (run()
    reconnects) and every entry of the window is still buffered."""
    n = MqttNotifier(MqttSettings(topic_prefix="p"), linger=0.0)
    client = WindowClient(n, lost=True)
    for seq in (1, 2, 3):
        n.call_event(CallEvent(call_id=f"c{seq}", seq=seq, type=CallEventType.QUEUED))
    reader: asyncio.Task[None] = asyncio.create_task(asyncio.sleep(3600))
    with pytest.raises(MqttError):
        await n._publish_loop(client, reader)  # type: ignore[arg-type]
    reader.cancel()
    assert n.pending == 3
    assert client.seen == []


def test_an_events_json_is_made_once_for_journal_and_mqtt_and_never_stale() -> None:
    from siaga112.model import Disposition, event_json

    first = CallEvent(call_id="c1", seq=1, type=CallEventType.ENDED,
                      data={"disposition": Disposition.GENUINE})
    made = event_json(first)
    assert made == first.model_dump_json().encode()
    assert event_json(first) is made  # the second sink's ask: not serialised again
    copy = first.model_copy(update={"seq": 2})  # another event, however alike
    assert event_json(copy) == copy.model_dump_json().encode() != made
    op = OperatorEvent(operator="op1", state=OperatorState.AVAILABLE)
    assert event_json(op) == op.model_dump_json().encode()
    assert event_json(first) == made
