"""What an id is (ids.py), the channel variables read back on a resync, and the check of an
agency's MQTT `moving` message (mqtt_inbound.read_team_moving): examples; tests/fuzz has the
properties over thousands of cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from siaga112 import ids
from siaga112.mqtt_buffer import Topics
from siaga112.mqtt_inbound import Refused, TeamMoving, read_team_moving


@pytest.mark.parametrize("value", [
    "1764480000.123", "1764480000.123-ag-01-0-1", "1764480000.123-01-1a2b3c4d", "op1", "c1",
    "a" * ids.ID_MAX,
])
def test_ids_asterisk_and_we_make_are_ids(value: str) -> None:
    assert ids.is_id(value) and ids.problem(value) is None


@pytest.mark.parametrize("value, problem", [
    ("", "must not be empty"),
    ("a" * (ids.ID_MAX + 1), "at most 128"),
    ("x\x00y", "may hold only"),
    ("a/b", "may hold only"),
    ("+", "may hold only"),
    ("#", "may hold only"),
    ("-leading", "must start with"),
    ("é", "may hold only"),
    ("1\n", "may hold only"),
    (7, "must be a string"),
])
def test_anything_else_is_not_and_the_problem_is_named(value: object, problem: str) -> None:
    assert not ids.is_id(value)
    wrong = ids.problem(value)
    assert wrong is not None and problem in wrong


def test_a_call_id_leaves_room_for_the_ids_built_from_it() -> None:
    call_id = "9" * ids.CALL_ID_MAX
    assert ids.is_call_id(call_id) and not ids.is_call_id(call_id + "9")
    assert ids.is_id(f"{call_id}-01-1a2b3c4d") and ids.is_id(f"{call_id}-op-op1-12")


def test_channel_tags_take_what_the_session_wrote() -> None:
    arrived = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    tags = ids.channel_tags({
        "SIAGA112_ARRIVED": arrived.isoformat(), "SIAGA112_PRIORITY": "1",
        "SIAGA112_FLAGS": "blocked_bypass,silent_emergency", "SIAGA112_LINE": "mobile",
        "SIAGA112_TRUNK": "trunk-mobile",
    })
    assert tags == ids.ChannelTags(arrived=arrived, priority=True,
                                   flags=["blocked_bypass", "silent_emergency"],
                                   line="mobile", trunk="trunk-mobile")
    assert ids.channel_tags(None) == ids.ChannelTags()


def test_channel_tags_leave_out_and_name_what_is_poisoned() -> None:
    tags = ids.channel_tags({
        "SIAGA112_ARRIVED": "2025-03-01T08:00:00",  # no zone: not what the session writes
        "SIAGA112_PRIORITY": "1; DROP TABLE calls",
        "SIAGA112_FLAGS": "blocked_bypass,a/b,\x01," + "x" * 300,
        "SIAGA112_LINE": "mobile\x00",
        "SIAGA112_TRUNK": "../../etc",
        "SIAGA112_GEO": "GML<script>" + "x" * 100,  # from the carrier's SIP: anything
    })
    assert tags.arrived is None and tags.priority is False
    assert tags.flags == ["blocked_bypass"]
    assert (tags.line, tags.trunk, tags.geo) == ("", "", "")
    assert set(tags.refused) == {"SIAGA112_ARRIVED", "SIAGA112_PRIORITY", "SIAGA112_FLAGS",
                                 "SIAGA112_LINE", "SIAGA112_TRUNK", "SIAGA112_GEO"}
    assert ids.channel_tags({"SIAGA112_GEO": "civicAddress"}).geo == "civicAddress"
    assert ids.dispatch_tag("1.1-01-abc") == "1.1-01-abc"
    assert ids.dispatch_tag("d/" + "9" * 70_000) == "" and ids.dispatch_tag(None) == ""


TOPICS = Topics("siaga112")


def test_an_agencys_moving_with_checked_ids_is_taken() -> None:
    read = read_team_moving(TOPICS, "siaga112/agencies/01/moving",
                            b'{"call_id": "1764480000.1", "dispatch_id": "1764480000.1-01-ab",'
                            b' "note": "ignored"}')
    assert isinstance(read, TeamMoving) and read.agency == "01"
    assert (read.payload.call_id, read.payload.dispatch_id) == ("1764480000.1",
                                                                "1764480000.1-01-ab")


@pytest.mark.parametrize("topic, payload, event, reason", [
    ("siaga112/queue", b"{}", "mqtt_unexpected_topic", "moving topic"),
    ("siaga112/agencies/1/moving", b"{}", "mqtt_team_moving_refused", "agency code"),
    ("siaga112/agencies/01/moving", b'{"call_id": "' + b"7" * 65_000 + b'"}',
     "mqtt_team_moving_refused", "over 4096"),
    ("siaga112/agencies/01/moving", b'{"call_id": "x\\u0000y", "dispatch_id": "d"}',
     "mqtt_team_moving_malformed", "checked ids"),
    ("siaga112/agencies/01/moving", b'{"call_id": "a/+/#", "dispatch_id": "d"}',
     "mqtt_team_moving_malformed", "checked ids"),
    ("siaga112/agencies/01/moving", b"\xff not json", "mqtt_team_moving_malformed", "ids"),
])
def test_a_moving_that_fails_a_check_is_refused_naming_why(
    topic: str, payload: bytes, event: str, reason: str
) -> None:
    read = read_team_moving(TOPICS, topic, payload)
    assert isinstance(read, Refused)
    assert read.event == event and reason in read.reason
    assert len(read.shown) <= 200
