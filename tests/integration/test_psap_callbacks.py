"""Calling citizens back through the real test PBX (issue 15, part 1): a caller who hung up
while waiting is on GET /callbacks; `*9` from a desk phone (or POST /callbacks/{id}/call) rings
the operator first, then the citizen's phone behind the trunk their call came in on (a SIPp
UAS on the trunk's address); the callback call is recorded and on MQTT, and closes the entry."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from siaga112_testkit import sipp
from siaga112_testkit.sipp import SippRun
from siaga112_testkit.topology import operator_ip
from tests.conftest import wait_for
from tests.integration.phones import MOBILE, e164, logged, mobile_number
from tests.integration.test_call_path import call_of, record
from tests.integration.test_events_api import (  # noqa: F401 - fixtures
    OPERATOR,
    SUPERVISOR,
    http,
    mqtt_settled,
    tap,
)

pytestmark = pytest.mark.integration


def citizen_phone(run_dir, ring: float = 0.3, talk: float | None = 2.0,
                  speech: Path | None = None) -> SippRun:
    """The citizen's phone behind the mobile trunk, answering the centre's call (and speaking
    from the answer on, when given a speech pcap)."""
    base = sipp.operator_phone(MOBILE, ring=ring, talk=talk, dtmf=speech,
                               dtmf_at=0.05 if speech else None)
    return SippRun(replace(base, scenario=base.scenario.with_name("citizen_answer.xml")),
                   run_dir)


async def abandoned_call(daemon, phones) -> tuple[str, str]:
    """A mobile caller who hangs up while waiting (nobody is logged in): (number, call id)."""
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=1.5)
    call_id = await call_of(daemon, e164(number))
    assert (await citizen.wait(15)).ok
    detail = await record(daemon, call_id)
    assert detail.call.disposition == "abandoned"
    return number, call_id


async def listed(http, call_id: str, status: str = "open") -> dict:  # noqa: F811
    async def find():
        async with http.get("/callbacks", params={"status": status},
                            headers=SUPERVISOR) as resp:
            assert resp.status == 200, await resp.text()
            entries = (await resp.json())["callbacks"]
        return next((c for c in entries if c["call_id"] == call_id), None)

    return await wait_for(find, 15, f"callback {call_id} {status} on GET /callbacks")


async def callback_record(daemon, number: str):
    async def find():
        await daemon.writer.wait_idle(2)
        calls = await daemon.repository.list_calls(caller=e164(number))
        done = [c for c in calls if c.callback_of and c.ended_at is not None]
        return done[0] if done else None

    return await wait_for(find, 15, f"the callback call to {number} in the records")


async def test_star9_calls_back_the_oldest_open_callback(daemon_factory, phones, tmp_path,
                                                         http, tap) -> None:  # noqa: F811
    daemon = await daemon_factory(logged_in=[])
    p = daemon.settings.mqtt.topic_prefix
    await mqtt_settled(daemon)
    events = await tap(f"{p}/calls/+/events")
    number, call_id = await abandoned_call(daemon, phones)
    entry = await listed(http, call_id)
    assert (entry["caller"], entry["trunk"], entry["attempts"]) == (
        e164(number), "trunk-mobile", 0)
    # Earlier tests' callers wait on the tests' own list (some written late, from a journal or
    # the fallback journal this daemon imported): set every other one aside, once the writer
    # is idle, so that the oldest open callback is this test's caller.
    await daemon.writer.wait_idle(5)
    async with daemon.engine.begin() as conn:
        await conn.execute(text("UPDATE callbacks SET closed_at = now(), "
                                "closed_reason = 'test_reset' "
                                "WHERE closed_at IS NULL AND call_id <> :mine"),
                           {"mine": call_id})

    async with citizen_phone(tmp_path / "citizen", talk=3.0,
                             speech=phones.pcaps.speech(10)) as citizen:
        desk = SippRun(sipp.operator_code(operator_ip(1), "*9", local_port=5071,
                                          media_port=6171), tmp_path / "op1-star9")
        await desk.start()
        try:
            await logged(citizen, "bye_sent", 20)
            desk_result = await desk.wait(15)
        finally:
            if desk.running:
                await desk.stop()
        result = await citizen.wait(10)
    assert result.ok, result.explain()
    [invite] = result.events("invite")
    assert invite["dialled"] == number  # the national form, through the trunk it came in on
    assert desk_result.ok, desk_result.explain()
    assert [e["status"] for e in desk_result.events("final")] == ["200"]
    assert desk_result.events("bye_received"), "the centre hangs up the desk phone at the end"

    cb = await callback_record(daemon, number)
    assert cb.callback_of == call_id and cb.disposition == "callback"
    assert cb.operator == "op1" and cb.operator_answered_at is not None
    assert cb.trunk == "trunk-mobile"

    async def recorded():
        await daemon.writer.wait_idle(2)
        detail = await daemon.repository.get_call(cb.call_id)
        return detail.call if detail and detail.call.recording_path else None

    # Recorded like every call: the dialplan's MixMonitor on the citizen's leg (the citizen
    # spoke for 3 s).
    rec = await wait_for(recorded, 20, "the callback's recording on its record")
    assert rec.recording_path.endswith(f"/{cb.call_id}.wav")
    assert rec.recording_seconds and rec.recording_seconds > 1.0
    closed = await listed(http, call_id, "closed")
    assert (closed["closed_reason"], closed["closed_by_call"], closed["attempts"]) == (
        "called_back", cb.call_id, 1)

    await mqtt_settled(daemon)
    # Published is not yet received by our subscriber: wait for the last step to arrive.
    await wait_for(lambda: len(events.call_events(f"{p}/calls/+/events", cb.call_id)) >= 4, 5,
                   "the callback's four steps on MQTT")
    steps = events.call_events(f"{p}/calls/+/events", cb.call_id)
    assert [e.type.value for e in steps] == ["arrived", "connected", "ended", "recording"]
    assert steps[0].data["direction"] == "outbound" and steps[0].data["callback_of"] == call_id
    ended = steps[2].data
    assert (ended["disposition"], ended["outcome"]) == ("callback", "answered")
    assert steps[3].data["path"] == rec.recording_path


async def test_api_call_back_rings_the_operator_first_then_the_citizen(
        daemon_factory, phones, tmp_path, http) -> None:  # noqa: F811
    daemon = await daemon_factory(logged_in=[])
    number, call_id = await abandoned_call(daemon, phones)
    await listed(http, call_id)
    op1 = await phones.operator(1, ring=0.5, talk=None)
    async with citizen_phone(tmp_path / "citizen", talk=1.5) as citizen:
        async with http.post(f"/callbacks/{call_id}/call", json={"operator": "op1"},
                             headers=OPERATOR) as resp:
            assert resp.status == 202, await resp.text()
            answer = await resp.json()
        assert answer["callback"] == call_id and answer["operator"] == "op1"
        op_rang, citizen_rang = await asyncio.gather(
            logged(op1, "invite", 10), logged(citizen, "invite", 15))
        assert op_rang < citizen_rang, "the operator's phone rings first"
        result = await citizen.wait(15)
    assert result.ok, result.explain()
    op_result = await op1.wait(10)
    [op_invite] = op_result.events("invite")
    assert op_invite["caller"] == number, "the desk phone shows whom it calls back"
    cb = await callback_record(daemon, number)
    assert cb.call_id == answer["call_id"] and cb.operator == "op1"
    assert cb.operator_answered_at is not None
    await listed(http, call_id, "closed")

    # Closed now: a second try is refused; an unknown one is not found.
    async with http.post(f"/callbacks/{call_id}/call", json={"operator": "op1"},
                         headers=OPERATOR) as resp:
        assert resp.status == 409
        assert (await resp.json())["detail"]["reason"] == "callback_closed"
    async with http.post("/callbacks/no-such-call/call", json={"operator": "op1"},
                         headers=OPERATOR) as resp:
        assert resp.status == 404
