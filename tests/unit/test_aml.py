"""AML (ETSI TS 103 625) messages: every field checked on its own, the first wrong one named;
the intake matches a message to the caller's live call or one that ended in the last 10
minutes, and keeps (file, memory, counters) what it refuses or cannot match."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from siaga112.location.aml import MAX_BODY, AmlError, parse_aml
from siaga112.location.intake import AmlIntake, RecentCalls
from siaga112.model import CallEvent, CallEventType
from siaga112.records.schemas import CallRecord

GOOD = {
    "v": "3", "emergency_number": "112", "device_number": "+6281234567890",
    "location_latitude": "-6.1201", "location_longitude": "106.1503",
    "location_accuracy": "12.5", "location_confidence": "68",
    "location_time": "1796022000000", "time": "1796022001000", "location_source": "GPS",
    "device_model": "Pixel 8", "cell_home_mcc": "510", "cell_home_mnc": "10",
}


def body(**changes: str | None) -> bytes:
    fields = {**GOOD, **changes}
    return urlencode({k: v for k, v in fields.items() if v is not None}).encode()


def test_a_good_message() -> None:
    msg = parse_aml(body())
    assert (msg.number, msg.lat, msg.lon, msg.accuracy_m) == (
        "+6281234567890", -6.1201, 106.1503, 12.5)
    assert msg.source == "GPS" and msg.confidence_pct == 68.0
    assert msg.location_time == datetime.fromtimestamp(1796022000, tz=UTC)
    data = msg.data()
    assert data["source"] == "aml" and data["radius_m"] == 12.5 and data["method"] == "GPS"


def test_national_number_is_normalised() -> None:
    assert parse_aml(body(device_number="081234567890")).number == "+6281234567890"


@pytest.mark.parametrize("changes, field", [
    ({"device_number": None}, "device_number"),
    ({"location_latitude": None}, "location_latitude"),
    ({"location_accuracy": ""}, "location_accuracy"),
    ({"v": None}, "v"),
    ({"v": "three"}, "v"),
    ({"device_number": "12345"}, "device_number"),
    ({"device_number": "+447700900123"}, "device_number"),
    ({"location_latitude": "91"}, "location_latitude"),
    ({"location_latitude": "nan"}, "location_latitude"),
    ({"location_longitude": "1e400"}, "location_longitude"),
    ({"location_longitude": "east"}, "location_longitude"),
    ({"location_accuracy": "-1"}, "location_accuracy"),
    ({"location_confidence": "101"}, "location_confidence"),
    ({"location_time": "yesterday"}, "location_time"),
    ({"location_time": "1"}, "location_time"),
    ({"time": "99999999999999"}, "time"),
    ({"location_source": "G P S"}, "location_source"),
    ({"device_imei": "12"}, "device_imei"),
    ({"cell_home_mcc": "5100"}, "cell_home_mcc"),
    ({"location_bearing": "400"}, "location_bearing"),
    ({"emergency_number": "911911911"}, "emergency_number"),
    ({"device_model": "x" * 300}, "device_model"),
    ({"device_model": "bad\x00model"}, "device_model"),
])
def test_each_bad_field_is_named(changes: dict[str, str | None], field: str) -> None:
    with pytest.raises(AmlError) as err:
        parse_aml(body(**changes))
    assert err.value.field == field


@pytest.mark.parametrize("raw, what", [
    (b"", "empty"),
    (b"\xff\xfe", "UTF-8"),
    (b"a" * (MAX_BODY + 1), "bytes"),
    (b"not a form", "key=value"),
    (b"v=3&v=3", "more than once"),
    (b"&".join(b"f%d=1" % i for i in range(100)), "key=value"),
    ("v=3&n\u00e9m=1".encode(), "field name"),
])
def test_bodies_that_cannot_be_read(raw: bytes, what: str) -> None:
    with pytest.raises(AmlError, match=what):
        parse_aml(raw)


# -- the intake ---------------------------------------------------------------------------------


def arrived(call_id: str, caller: str, **data: str) -> CallEvent:
    return CallEvent(call_id=call_id, seq=1, type=CallEventType.ARRIVED,
                     data={"caller": caller, **data})


def ended(call_id: str, at: datetime) -> CallEvent:
    return CallEvent(call_id=call_id, seq=9, type=CallEventType.ENDED, at=at,
                     data={"disposition": "genuine"})


class Records:
    def __init__(self, calls: list[CallRecord] | None = None, fail: bool = False) -> None:
        self.calls = calls or []
        self.fail = fail

    async def __call__(self, number: str) -> list[CallRecord]:
        if self.fail:
            raise OSError("database away")
        return [c for c in self.calls if c.caller == number]


def intake(tmp_path: Path, recent: RecentCalls, records: Records,
           out: list[CallEvent]) -> AmlIntake:
    return AmlIntake(recent, records, out.append, tmp_path)


async def test_matched_to_the_live_call_as_a_location_event(tmp_path: Path) -> None:
    recent, out = RecentCalls(), list[CallEvent]()
    recent.call_event(arrived("c1", "+6281234567890"))
    got = await intake(tmp_path, recent, Records(), out).receive(body(), "handset gateway")
    assert (got.outcome, got.call_id) == ("matched", "c1")
    assert len(out) == 1 and out[0].type is CallEventType.LOCATION and out[0].call_id == "c1"
    assert out[0].data["source"] == "aml" and out[0].data["lat"] == -6.1201
    assert not (tmp_path / "aml" / "kept.jsonl").exists()


async def test_a_call_ended_within_10_minutes_matches_and_an_older_one_does_not(
        tmp_path: Path) -> None:
    recent, out = RecentCalls(), list[CallEvent]()
    recent.call_event(arrived("c1", "+6281234567890"))
    recent.call_event(ended("c1", datetime.now(UTC) - timedelta(minutes=9)))
    aml = intake(tmp_path, recent, Records(), out)
    assert (await aml.receive(body(), "gw")).call_id == "c1"
    recent.call_event(ended("c1", datetime.now(UTC) - timedelta(minutes=11)))
    got = await aml.receive(body(), "gw")
    assert got.outcome == "unmatched" and len(out) == 1


async def test_outbound_callbacks_are_not_matched(tmp_path: Path) -> None:
    recent, out = RecentCalls(), list[CallEvent]()
    recent.call_event(arrived("cb1", "+6281234567890", direction="outbound"))
    assert (await intake(tmp_path, recent, Records(), out).receive(body(), "gw")).outcome == (
        "unmatched")


async def test_after_a_restart_the_records_are_asked(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    live = CallRecord(call_id="old-live", caller="+6281234567890", arrived_at=now,
                      updated_at=now)
    out: list[CallEvent] = []
    got = await intake(tmp_path, RecentCalls(), Records([live]), out).receive(body(), "gw")
    assert got.call_id == "old-live"


async def test_unmatched_and_invalid_are_kept_counted_and_never_dropped(tmp_path: Path) -> None:
    out: list[CallEvent] = []
    aml = intake(tmp_path, RecentCalls(), Records(fail=True), out)
    assert (await aml.receive(body(), "gw")).outcome == "unmatched"
    bad = await aml.receive(body(location_latitude="95"), "gw")
    assert (bad.outcome, bad.field) == ("invalid", "location_latitude")
    lines = [json.loads(x) for x in (tmp_path / "aml" / "kept.jsonl").read_text().splitlines()]
    assert [x["outcome"] for x in lines] == ["unmatched", "invalid"]
    assert "location_latitude" in lines[1]["problem"] and "95" in lines[1]["body"]
    assert aml.counts == {"matched": 0, "unmatched": 1, "invalid": 1, "lost": 0}
    assert [k["outcome"] for k in aml.kept] == ["unmatched", "invalid"]
    assert out == []
