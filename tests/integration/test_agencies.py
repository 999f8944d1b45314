"""Agency duty lines through the real test PBX (issue 5): the operator's *2NN brings an agency
onto the call, a duty line that does not answer gives way to its fallback, the citizen and the
agency stay together when the operator hangs up, the agency's 1 accepts the case, and the
15-minute clock reports a dispatch whose team is not moving. SIPp plays citizen, operator and
agencies; the records are read back from PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiomqtt
import pytest

from siaga112 import legs
from siaga112.ari.client import AriClient, AriError
from siaga112.ari.models import AriEvent, PlaybackFinished
from tests.conftest import ari_settings, wait_for
from tests.integration.phones import MOBILE, e164, mobile_number
from tests.integration.test_call_path import call_of, record

pytestmark = pytest.mark.integration

API = "http://127.0.0.1:8112"
OPERATOR_TOKEN = {"Authorization": "Bearer operator-token"}  # from daemon_settings


# -- helpers ----------------------------------------------------------------------------------


async def bridge_channels(call_id: str) -> list[str]:
    """Every channel in the call's bridge, as Asterisk lists them."""
    async with AriClient(ari_settings()) as ari:
        try:
            return (await ari.get_bridge(legs.call_bridge(call_id))).channels
        except AriError:
            return []


def legs_of(call_id: str, channels: list[str]) -> set[str]:
    """The call's own legs among them. (A prompt played to the bridge puts an announcer
    channel of Asterisk's own in it, for as long as Asterisk keeps it: not a leg.)"""
    return {c for c in channels if legs.parse(c).call_id == call_id}


async def bridge_members(call_id: str) -> set[str]:
    return legs_of(call_id, await bridge_channels(call_id))


async def bridge_holds(call_id: str, channels: set[str], what: str) -> None:
    seen: list[list[str]] = []

    async def check() -> bool:
        seen.append(await bridge_channels(call_id))
        return legs_of(call_id, seen[-1]) == channels

    try:
        await wait_for(check, 10, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the bridge held {seen[-3:]}") from None


async def joined(session: Any, code: str) -> str:
    """The channel of agency `code` once it is on the call."""

    def channel() -> str | None:
        d = session.agencies.dispatch(code)
        return d.channel if d is not None and d.joined else None

    return await wait_for(channel, 15, f"agency {code} on the call")


def played(daemon: Any) -> list[PlaybackFinished]:
    """Every PlaybackFinished the daemon receives from now on (prompts it played)."""
    seen: list[PlaybackFinished] = []
    route = daemon.events._on_event

    def spy(ev: AriEvent) -> None:
        if isinstance(ev, PlaybackFinished):
            seen.append(ev)
        route(ev)

    daemon.events._on_event = spy
    return seen


def prompts_to(seen: list[PlaybackFinished], target: str) -> dict[str, str]:
    """Prompt name -> how its playback ended, for one target ("channel:ID" or "bridge:ID")."""
    return {p.playback.media_uri.removeprefix("sound:siaga112/"): p.playback.state
            for p in seen if p.playback.target_uri == target}


async def citizen_with_operator(daemon: Any, phones: Any, *, code: str, op_talk: float | None,
                                hold: float | None) -> tuple[Any, Any, str]:
    """A citizen talking to op1, who keys `code` 1 s after answering and hangs up op_talk s
    after answering (None: stays until the call ends). hold: the citizen hangs up then."""
    op1 = await phones.operator(1, ring=0.2, talk=op_talk, dtmf=phones.pcaps.dtmf(code),
                                dtmf_at=1.0)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=hold, audio=phones.pcaps.speech(10))
    return op1, citizen, await call_of(daemon, e164(number))


def types(detail: Any) -> list[str]:
    return [e.type for e in detail.events]


def events_of(detail: Any, type_: str) -> list[dict[str, Any]]:
    return [e.data for e in detail.events if e.type == type_]


@contextlib.asynccontextmanager
async def agency_systems(daemon: Any) -> AsyncIterator[tuple[aiomqtt.Client, list[dict[str, Any]]]]:
    """The agencies' side of MQTT: a client that reads every agency's dispatch topic (the
    events it gets, parsed) and may publish "team moving"."""
    received: list[dict[str, Any]] = []
    prefix = daemon.settings.mqtt.topic_prefix
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"agencies-{uuid.uuid4().hex}") as c:
        await c.subscribe(f"{prefix}/agencies/+/dispatches", qos=1)

        async def read() -> None:
            async for message in c.messages:
                received.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]

        reader = asyncio.create_task(read())
        try:
            yield c, received
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def api_post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers=OPERATOR_TOKEN) as http:
        async with http.post(API + path, json=body) as resp:
            return resp.status, await resp.json()


# -- tests ------------------------------------------------------------------------------------


async def test_operator_code_puts_agency_on_the_call_with_both(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    prompts = played(daemon)
    agency = await phones.agency("01", ring=0.2)
    op1, citizen, call_id = await citizen_with_operator(daemon, phones, code="*201",
                                                        op_talk=None, hold=12.0)
    session = daemon.stasis.sessions[call_id]
    channel = await joined(session, "01")
    # Read once the agency is on the call: the operator keyed *201 on it, so their leg is
    # the call's now (read at arrival, it was None while the daemon had not rung them yet).
    operator_channel = session.operator_channel
    await bridge_holds(call_id, {call_id, operator_channel, channel},
                       "citizen, operator and agency in the call's bridge")
    assert (await citizen.wait(20)).ok
    invites = (await agency.wait(10)).events("invite")
    assert [i["caller"] for i in invites] == [e164(citizen.config.keys["caller"])], (
        "the duty line must show the citizen's number")
    assert (await op1.wait(10)).events("bye_received")
    assert agency.result and agency.result.events("bye_received"), "agency leg hung up at the end"
    detail = await record(daemon, call_id)
    assert detail.call.agencies == ["01"]
    assert types(detail).count("agency_requested") == 1
    assert types(detail).count("agency_joined") == 1
    (requested,) = events_of(detail, "agency_requested")
    assert requested["by"] == "op1"
    (dispatch,) = detail.dispatches
    assert (dispatch.agency, dispatch.line) == ("01", "PJSIP/agency01")
    assert dispatch.requested_at and dispatch.answered_at
    # Everyone on the call hears "connecting", cut short by "agency joined" when it joins.
    heard = prompts_to(prompts, f"bridge:{legs.call_bridge(call_id)}")
    assert list(heard) == ["connecting-agency", "agency-joined"], heard
    assert heard["agency-joined"] == "done", heard
    assert "accept-case" in prompts_to(prompts, f"channel:{channel}")


async def test_duty_line_without_answer_falls_back_to_next_line(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"], agency={"answer_timeout": 2})
    duty = await phones.agency_noanswer("02")
    fallback = await phones.agency("02", fallback=True, ring=0.2)
    await phones.operator(1, ring=0.2, talk=None)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=8.0, audio=phones.pcaps.speech(10))
    call_id = await call_of(daemon, e164(number))
    session = daemon.stasis.sessions[call_id]
    await wait_for(lambda: session.operator_channel and session.state.value == "connected", 10)
    status, answer = await api_post(f"/calls/{call_id}/agencies", {"agency": "02"})  # as *202
    assert (status, answer["result"]) == (202, "dialling"), answer
    channel = await joined(session, "02")
    assert legs.parse(channel).line == 1, "the fallback line took the call"
    await bridge_holds(call_id, {call_id, session.operator_channel, channel}, "fallback on call")
    assert (await citizen.wait(15)).ok
    assert len((await duty.wait(5)).events("invite")) == 1
    assert (await fallback.wait(5)).events("bye_received")
    detail = await record(daemon, call_id)
    steps = [(e.type, e.data.get("line")) for e in detail.events if e.type.startswith("agency")]
    assert steps == [("agency_requested", None), ("agency_line_failed", "PJSIP/agency02"),
                     ("agency_joined", "PJSIP/agency02-fb")], steps
    (failed,) = events_of(detail, "agency_line_failed")
    assert failed["reason"].startswith("no answer"), failed
    (dispatch,) = detail.dispatches
    assert (dispatch.line, dispatch.outcome) == ("PJSIP/agency02-fb", "answered")


async def test_operator_hangs_up_citizen_and_agency_stay(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    agency = await phones.agency("01", ring=0.2)
    op1, citizen, call_id = await citizen_with_operator(daemon, phones, code="*201",
                                                        op_talk=3.0, hold=7.0)
    session = daemon.stasis.sessions[call_id]
    channel = await joined(session, "01")
    await wait_for(lambda: session.operator_channel is None, 10, "the operator hung up")
    await bridge_holds(call_id, {call_id, channel}, "citizen and agency still together")
    assert (await op1.wait(10)).events("bye_sent")
    result = await citizen.wait(15)
    assert result.ok and result.events("bye_sent") and not result.events("bye_received"), (
        "the citizen's call lasted until the citizen hung up")
    assert (await agency.wait(10)).events("bye_received"), "the agency leg is hung up at the end"
    detail = await record(daemon, call_id)
    assert types(detail).index("operator_left") < types(detail).index("ended")
    (ended,) = events_of(detail, "ended")
    assert (ended["hangup_by"], ended["disposition"]) == ("caller", "genuine")
    assert detail.call.agencies == ["01"]
    assert await bridge_members(call_id) == set(), "the call's bridge is gone"


async def test_two_agencies_acceptance_moving_and_overdue(daemon_factory, phones) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await two_agencies_acceptance_moving_and_overdue(daemon_factory, phones, stack)


async def two_agencies_acceptance_moving_and_overdue(daemon_factory: Any, phones: Any,
                                                     stack: contextlib.AsyncExitStack) -> None:
    # "Team moving" is due 6 s after the request here (15 minutes in service).
    daemon = await daemon_factory(logged_in=["op1"], agency={
        "moving_deadline_minutes": 0.1, "overdue_check_interval": 0.2})
    fire = await phones.agency("01", ring=0.2, dtmf=phones.pcaps.dtmf("1"), dtmf_at=1.0)
    police = await phones.agency("02", ring=0.2)
    mqtt = await stack.enter_async_context(agency_systems(daemon))
    op1, citizen, call_id = await citizen_with_operator(daemon, phones, code="*201*202",
                                                        op_talk=None, hold=5.0)
    session = daemon.stasis.sessions[call_id]
    ch01, ch02 = await joined(session, "01"), await joined(session, "02")
    await bridge_holds(call_id, {call_id, session.operator_channel, ch01, ch02},
                       "citizen, operator and both agencies")
    fire_dispatch = session.agencies.dispatch("01").dispatch_id
    police_dispatch = session.agencies.dispatch("02").dispatch_id
    status, _ = await api_post(f"/dispatches/{fire_dispatch}/moving",
                               {"call_id": call_id, "agency": "01"})
    assert status == 202
    await wait_for(lambda: session.agencies.dispatch("01").accepted, 10, "01 pressed 1")
    assert (await citizen.wait(15)).ok
    assert (await fire.wait(5)).events("dtmf_sent") and (await police.wait(5)).ok

    async def overdue_recorded() -> Any:
        detail = await record(daemon, call_id)
        return detail if any(d.overdue_at for d in detail.dispatches) else None

    detail = await wait_for(overdue_recorded, 20, "the police dispatch reported overdue")
    by_agency = {d.agency: d for d in detail.dispatches}
    fire_row, police_row = by_agency["01"], by_agency["02"]
    assert fire_row.dispatch_id == fire_dispatch and police_row.dispatch_id == police_dispatch
    assert fire_row.requested_at < fire_row.answered_at < fire_row.accepted_at
    assert fire_row.moving_at is not None and fire_row.outcome == "moving"
    assert fire_row.overdue_at is None, "a team on the move is never overdue"
    assert police_row.answered_at and police_row.accepted_at is None
    assert police_row.moving_at is None and police_row.overdue_at is not None
    (overdue,) = events_of(detail, "overdue")
    assert (overdue["agency"], overdue["dispatch_id"], overdue["kind"]) == (
        "02", police_dispatch, "moving")
    steps = {(e.type, e.data.get("agency")) for e in detail.events}
    for step in [("agency_requested", "01"), ("agency_joined", "01"), ("agency_accepted", "01"),
                 ("team_moving", "01"), ("agency_requested", "02"), ("agency_joined", "02"),
                 ("overdue", "02"), ("ended", None)]:
        assert step in steps, f"{step} missing from the record: {sorted(steps)}"
    assert sorted(detail.call.agencies) == ["01", "02"]
    # Published to the agencies too: the police system was told its dispatch is overdue.
    client, received = mqtt
    await wait_for(lambda: any(m["type"] == "overdue" and m["call_id"] == call_id
                               for m in received), 10, "the overdue event on MQTT")
    # A late team still reports moving, over MQTT: recorded, the overdue mark stays.
    prefix = daemon.settings.mqtt.topic_prefix
    await client.publish(f"{prefix}/agencies/02/moving", qos=1, payload=json.dumps(
        {"call_id": call_id, "dispatch_id": police_dispatch}))

    async def police_moving() -> Any:
        detail = await record(daemon, call_id)
        row = next(d for d in detail.dispatches if d.agency == "02")
        return row if row.moving_at else None

    late = await wait_for(police_moving, 10, "the police team moving, from MQTT")
    assert late.overdue_at is not None and late.moving_at > late.overdue_at


async def test_directory_from_settings_is_in_the_database(daemon_factory) -> None:
    from sqlalchemy import select

    from siaga112.agencies import DEFAULT_DIRECTORY
    from siaga112.records.tables import agencies

    renamed = "Damkar Kota Serang (test)"
    directory = [a.model_copy(update={"name": renamed}) if a.code == "01" else a
                 for a in DEFAULT_DIRECTORY if a.code != "14"]
    daemon = await daemon_factory(logged_in=[], agencies=[a.model_dump() for a in directory])

    async def synced() -> dict[str, Any] | None:
        async with daemon.engine.connect() as conn:
            rows = {r["code"]: r for r in (await conn.execute(select(agencies))).mappings()}
        return rows if "01" in rows and rows["01"]["name"] == renamed else None

    rows = await wait_for(synced, 10, "the directory synced at start")
    assert not rows["14"]["active"], "an agency dropped from settings stays, inactive"
    for a in directory:
        row = rows[a.code]
        assert (row["name"], row["scope"], row["lines"], row["categories"], row["active"]) == (
            a.name, a.scope.value, a.lines, a.categories, True)


async def test_operator_gone_while_duty_line_rings_citizen_waits(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    agency = await phones.agency("03", ring=3.0)  # answers after the operator has gone
    op1, citizen, call_id = await citizen_with_operator(daemon, phones, code="*203",
                                                        op_talk=2.2, hold=8.0)
    session = daemon.stasis.sessions[call_id]
    channel = await joined(session, "03")
    await bridge_holds(call_id, {call_id, channel}, "citizen and the agency that answered late")
    assert (await op1.wait(10)).events("bye_sent")
    result = await citizen.wait(15)
    assert result.ok and result.events("bye_sent"), "the citizen hung up, not us"
    assert (await agency.wait(10)).events("bye_received")
    detail = await record(daemon, call_id)
    assert types(detail).index("operator_left") < types(detail).index("agency_joined")
