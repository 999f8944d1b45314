"""Agencies' MQTT messages (the only inbound MQTT: {prefix}/agencies/{code}/moving), fed any
topic and any payload: read_team_moving never raises, takes only checked ids of a two-digit
agency, and what it takes, once published again as a call event, makes only safe topics.
Whatever call id or agency code an event carries, no outgoing topic holds an unchecked one."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from siaga112 import ids
from siaga112.model import CallEvent, CallEventType
from siaga112.mqtt_buffer import Topics
from siaga112.mqtt_inbound import Refused, TeamMoving, read_team_moving
from siaga112.notifier import MqttNotifier
from siaga112.settings import MqttSettings
from tests.fuzz.strategies import (
    FUZZ,
    FUZZ_EXTRA,
    HOSTILE_TEXT,
    ID_LIKE,
    JSON_SCALAR,
    JSON_VALUE,
    dumps,
    spoiled,
)

PREFIX = "siaga112"
TOPICS = Topics(PREFIX)
FIXED_LEVELS = {"siaga112", "calls", "events", "agencies", "dispatches", "operators", "queue",
                "status"}
REFUSALS = {"mqtt_unexpected_topic", "mqtt_team_moving_refused", "mqtt_team_moving_malformed"}

CODE = st.one_of(st.sampled_from(["01", "02", "14", "1", "001", "+", "#", "", "0\x00", "٠١"]),
                 HOSTILE_TEXT)
TOPIC = st.one_of(
    st.builds(lambda code: f"{PREFIX}/agencies/{code}/moving", CODE),
    st.sampled_from([f"{PREFIX}/agencies//moving", f"{PREFIX}/agencies/01/02/moving",
                     f"{PREFIX}/status", "other/agencies/01/moving"]),
    HOSTILE_TEXT,
)
ID_VALUE = st.one_of(st.sampled_from(["1764480000.123", "1764480000.123-01-1a2b3c4d"]),
                     ID_LIKE, HOSTILE_TEXT, JSON_SCALAR)
PAYLOAD = st.one_of(
    st.builds(dumps, spoiled([{"call_id": "1764480000.123",
                               "dispatch_id": "1764480000.123-01-1a2b3c4d"}], ID_VALUE)),
    st.builds(dumps, spoiled([{"call_id": "1764480000.123",
                               "dispatch_id": "1764480000.123-01-1a2b3c4d"}], ID_VALUE)),
    st.builds(dumps, JSON_VALUE),
    st.binary(max_size=64),
    HOSTILE_TEXT,
    st.sampled_from([None, 7, 1.5, bytearray(b'{"call_id": "c", "dispatch_id": "d"}')]),
)


def _topics_of(event: CallEvent) -> list[str]:
    notifier = MqttNotifier(MqttSettings(topic_prefix=PREFIX))
    notifier.call_event(event)
    return [m.topic for entry in notifier._buffer.head(10) for m in entry.messages]


def _assert_safe(topic: str) -> None:
    assert len(topic) < 300, len(topic)
    for level in topic.split("/"):
        assert level in FIXED_LEVELS or ids.is_id(level), repr(level)[:200]


@FUZZ
@given(topic=TOPIC, payload=PAYLOAD)
@example(topic=f"{PREFIX}/agencies/01/moving",
         payload=b'{"call_id": "' + b"7" * 65_000 + b'", "dispatch_id": "d"}')
@example(topic=f"{PREFIX}/agencies/01/moving",
         payload=b'{"call_id": "x\\u0000y", "dispatch_id": "d"}')
@example(topic=f"{PREFIX}/agencies/01/moving", payload=b'{"call_id": "a/+/#", "dispatch_id": "d"}')
def test_an_agency_message_is_taken_only_with_checked_ids(topic: str, payload: Any) -> None:
    read = read_team_moving(TOPICS, topic, payload)
    if isinstance(read, Refused):
        assert read.event in REFUSALS and read.reason
        assert len(read.shown) <= 200
        return
    assert isinstance(read, TeamMoving)
    assert ids.is_agency_code(read.agency)
    assert ids.is_call_id(read.payload.call_id) and ids.is_id(read.payload.dispatch_id)
    event = CallEvent(call_id=read.payload.call_id, seq=0, type=CallEventType.TEAM_MOVING,
                      data={"agency": read.agency, "dispatch_id": read.payload.dispatch_id})
    topics = _topics_of(event)
    assert f"{PREFIX}/calls/{read.payload.call_id}/events" in topics
    for t in topics:
        _assert_safe(t)


def _encodable(value: object) -> bool:
    """A str that can be UTF-8 (what any JSON parser in front of us lets through)."""
    try:
        return isinstance(value, str) and bool(value.encode("utf-8")) | True
    except UnicodeEncodeError:
        return False


@FUZZ_EXTRA
@given(call_id=ID_VALUE.filter(_encodable), agency=CODE.filter(_encodable),
       kind=st.sampled_from(sorted(CallEventType)))
def test_no_outgoing_topic_holds_an_unchecked_id(call_id: str, agency: str,
                                                 kind: CallEventType) -> None:
    event = CallEvent(call_id=call_id, seq=1, type=kind,
                      data={"agency": agency, "dispatch_id": "d1"})
    topics = _topics_of(event)
    # the all-calls feed (the call topics' wildcard) always has it
    on_a_call = [t for t in topics if t.split("/")[:2] == [PREFIX, "calls"]]
    assert len(on_a_call) == 1 and on_a_call[0].count("/") == 3, topics
    assert on_a_call[0].endswith("/events")
    for t in topics:
        _assert_safe(t)
