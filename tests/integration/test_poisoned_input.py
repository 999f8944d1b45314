"""Poisoned input (issue 11): hostile API bodies, agencies' MQTT payloads and ARI channel
variables fed to the running daemon. Each is refused (a 422 naming the field, a logged
refusal) or taken safely, an agency touches only its own dispatches, and after each kind the
daemon, restarted on the same journal, still serves a real SIPp call to an operator, records
it, and its MQTT feed still flows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from sqlalchemy import select

from siaga112 import ids, legs
from siaga112.app import Daemon
from siaga112.ari.client import AriClient
from siaga112.model import CallEvent, CallEventType
from siaga112.records.apply import store
from siaga112.records.tables import calls, dispatches
from tests.conftest import Stack, ari_settings, daemon_settings, reset_pbx, wait_for
from tests.integration.phones import MOBILE, Phones, e164, mobile_number

pytestmark = pytest.mark.integration

API = "http://127.0.0.1:8112"
ADMIN = "poison-admin-token-0123456789abcdef"
OPERATOR = "poison-operator-token-0123456789abcdef"
SUPERVISOR = "poison-supervisor-token-0123456789abcdef"
AGENCY01 = "poison-agency01-token-0123456789abcdef"

Start = Callable[[], Awaitable[Daemon]]
Restart = Callable[[Daemon], Awaitable[Daemon]]


@pytest.fixture
async def daemons(stack: Stack, tmp_path: Path) -> AsyncIterator[tuple[Start, Restart]]:
    """start() -> a daemon on the local stack; restart(d) -> d stopped and a new one started on
    the same state directory (its journal) and MQTT prefix. All stopped at the end."""
    overrides: dict[str, Any] = {
        "mqtt": {"topic_prefix": f"test-poison-{uuid.uuid4().hex[:8]}/siaga112"},
        "api": {"tokens": [
            {"token": ADMIN, "role": "admin", "name": "poison admin"},
            {"token": OPERATOR, "role": "operator", "name": "poison operator"},
            {"token": SUPERVISOR, "role": "supervisor", "name": "poison supervisor"},
            {"token": AGENCY01, "role": "agency", "name": "damkar", "agency": "01"},
        ]},
    }
    running: list[Daemon] = []

    async def start() -> Daemon:
        await reset_pbx(["op1"])
        daemon = Daemon(daemon_settings(stack, tmp_path, **overrides))
        await daemon.start()
        running.append(daemon)
        await asyncio.wait_for(daemon.stasis.resynced.wait(), 10)
        return daemon

    async def restart(daemon: Daemon) -> Daemon:
        running.remove(daemon)
        await daemon.shutdown(grace=2)
        again = Daemon(daemon_settings(stack, tmp_path, **overrides))
        await again.start()
        running.append(again)
        await asyncio.wait_for(again.stasis.resynced.wait(), 10)
        return again

    yield start, restart
    for daemon in running:
        await daemon.shutdown(grace=2)
    await reset_pbx(["op1"])


# -- what "still serves a call" means ---------------------------------------------------------


async def serve_a_call(daemon: Daemon, phones: Phones, caller: str | None = None) -> str:
    """A citizen calls 112, op1's desk phone rings with the citizen's number and answers, the
    operator hangs up after a second; the call is recorded as answered by op1. Its call id."""
    number = caller or mobile_number()
    since = datetime.now(UTC)
    op1 = await phones.operator(1, ring=0.2, talk=1.0)
    citizen = await phones.citizen(number, MOBILE, hold=None)
    result = await citizen.wait(25)
    assert result.ok, result.explain()
    invites = (await op1.wait(10)).events("invite")
    assert len(invites) == 1, op1.logs()

    async def recorded() -> Any:
        await daemon.writer.wait_idle(2)
        found = [c for c in await daemon.repository.list_calls(since=since, operator="op1")
                 if c.ended_at is not None]
        return found[0] if len(found) == 1 else None

    record = await wait_for(recorded, 15, f"the record of the call from {number[:20]}...")
    assert record.operator_answered_at is not None
    assert record.caller_raw and number.startswith(record.caller_raw)
    assert record.caller == (e164(number) if len(number) == 12 else None)
    return record.call_id


async def ready(daemon: Daemon) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{API}/ready", headers=bearer(SUPERVISOR)) as resp:
            answer: dict[str, Any] = await resp.json()
            assert resp.status == 200, answer
            return answer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def two_dispatches(daemon: Daemon) -> tuple[str, str, str, str]:
    """Two recorded calls with a dispatch each, to agency 01 and to agency 02:
    (agency 01's call, its dispatch, agency 02's call, its dispatch)."""
    out: list[str] = []
    events: list[CallEvent] = []
    for code in ("01", "02"):
        call_id = f"1700000000.{uuid.uuid4().int % 10**9}"
        dispatch_id = f"{call_id}-{code}-{uuid.uuid4().hex[:8]}"
        out += [call_id, dispatch_id]
        events += [
            CallEvent(call_id=call_id, seq=1, type=CallEventType.ARRIVED,
                      data={"caller": "+6281234567890", "line_type": "mobile"}),
            CallEvent(call_id=call_id, seq=2, type=CallEventType.AGENCY_REQUESTED,
                      data={"agency": code, "dispatch_id": dispatch_id, "by": "op1"}),
        ]
    await store(daemon.engine, daemon.policy, events)
    call01, dispatch01, call02, dispatch02 = out
    return call01, dispatch01, call02, dispatch02


async def moving_recorded(daemon: Daemon, dispatch_id: str, what: str) -> None:
    async def moving() -> Any:
        row = await dispatch_row(daemon, dispatch_id)
        return row if row is not None and row.moving_at is not None else None

    await wait_for(moving, 10, what)


async def dispatch_row(daemon: Daemon, dispatch_id: str) -> Any:
    async with daemon.engine.connect() as conn:
        return (await conn.execute(
            select(dispatches).where(dispatches.c.dispatch_id == dispatch_id))).first()


async def call_row(daemon: Daemon, call_id: str) -> Any:
    async with daemon.engine.connect() as conn:
        return (await conn.execute(select(calls).where(calls.c.call_id == call_id))).first()


# -- the tests --------------------------------------------------------------------------------


async def test_poisoned_api_bodies_are_refused_and_the_daemon_serves_after_a_restart(
    daemons: tuple[Start, Restart], phones: Phones
) -> None:
    start, restart = daemons
    daemon = await start()
    call01, dispatch01, call02, dispatch02 = await two_dispatches(daemon)
    phantom = f"{call01}-01-phantom"
    probes: list[tuple[str, str, dict[str, Any], int, str]] = [
        # (path, token, body, status, what the answer names)
        ("/dispatches/x/moving", OPERATOR, {"call_id": "x\u0000y", "agency": "01"}, 422,
         "call_id"),
        ("/dispatches/x/moving", OPERATOR, {"call_id": "7" * 65_000, "agency": "01"}, 422,
         "call_id"),
        ("/dispatches/x/moving", OPERATOR, {"call_id": "a/+/#", "agency": "01"}, 422, "call_id"),
        (f"/dispatches/{'d' * 129}/moving", OPERATOR, {"call_id": call01, "agency": "01"}, 422,
         "dispatch_id"),
        ("/operators/op2/state", OPERATOR, {"state": "paused", "reason": "tea\u0000"}, 422,
         "reason"),
        ("/blocklist", ADMIN, {"number": "081234567890", "hours": 1, "reason": "x\u0000"}, 422,
         "reason"),
        ("/calls/x%00y/disposition", OPERATOR, {"disposition": "prank"}, 422, "call_id"),
        # agency 01 on agency 02's dispatch, and on one that does not exist
        (f"/dispatches/{dispatch02}/moving", AGENCY01, {"call_id": call02, "agency": "01"}, 404,
         "dispatch_not_found"),
        (f"/dispatches/{phantom}/moving", AGENCY01, {"call_id": call01, "agency": "01"}, 404,
         "dispatch_not_found"),
        # its own dispatch: taken
        (f"/dispatches/{dispatch01}/moving", AGENCY01, {"call_id": call01, "agency": "01"}, 202,
         dispatch01),
    ]
    async with aiohttp.ClientSession() as http:
        for path, token, body, status, named in probes:
            async with http.post(API + path, headers=bearer(token),
                                 data=json.dumps(body).encode()) as resp:
                text = await resp.text()
                assert resp.status == status, (path, body if len(str(body)) < 200 else "...",
                                               text[:300])
                assert named in text, text[:300]
                assert len(text) < 3000, "a refusal does not echo the input"

    await moving_recorded(daemon, dispatch01, "agency 01's own dispatch moving")
    assert (await dispatch_row(daemon, dispatch02)).moving_at is None
    assert await dispatch_row(daemon, phantom) is None
    assert (await ready(daemon))["ready"] is True

    daemon = await restart(daemon)  # on the same journal: nothing in it stops a start
    assert (await ready(daemon))["ready"] is True
    await serve_a_call(daemon, phones)


async def test_poisoned_mqtt_payloads_are_refused_and_the_feed_flows(
    daemons: tuple[Start, Restart], phones: Phones
) -> None:
    start, restart = daemons
    daemon = await start()
    call01, dispatch01, call02, dispatch02 = await two_dispatches(daemon)
    prefix = daemon.settings.mqtt.topic_prefix
    phantom_call = f"1700000000.{uuid.uuid4().int % 10**9}"
    poisons: list[tuple[str, bytes]] = [
        ("01", json.dumps({"call_id": "7" * 65_000, "dispatch_id": dispatch01}).encode()),
        ("01", json.dumps({"call_id": "x\u0000y", "dispatch_id": dispatch01}).encode()),
        ("01", json.dumps({"call_id": "a/+/#", "dispatch_id": dispatch01}).encode()),
        ("01", json.dumps({"call_id": call01, "dispatch_id": "d/" + "9" * 70_000}).encode()),
        ("01", b"\xff\xfe not json"),
        ("01", b"[1, 2, 3]"),
        ("1", json.dumps({"call_id": call01, "dispatch_id": dispatch01}).encode()),
        # on agency 01's topic: agency 02's dispatch, and one that does not exist
        ("01", json.dumps({"call_id": call02, "dispatch_id": dispatch02}).encode()),
        ("01", json.dumps({"call_id": phantom_call,
                           "dispatch_id": f"{phantom_call}-01-x"}).encode()),
    ]
    async with aiomqtt.Client("127.0.0.1", 1883,
                              identifier=f"poison-{uuid.uuid4().hex}") as client:
        await client.subscribe(f"{prefix}/calls/+/events", qos=1)
        feed: list[dict[str, Any]] = []

        async def read() -> None:
            async for message in client.messages:
                feed.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]

        reader = asyncio.create_task(read())
        try:
            for code, payload in poisons:
                await client.publish(f"{prefix}/agencies/{code}/moving", payload, qos=1)
            # Last, agency 01's own: once it is recorded, every poison before it was handled.
            await client.publish(f"{prefix}/agencies/01/moving", qos=1, payload=json.dumps(
                {"call_id": call01, "dispatch_id": dispatch01}).encode())

            await moving_recorded(daemon, dispatch01, "agency 01's own dispatch moving, MQTT")
            assert (await dispatch_row(daemon, dispatch02)).moving_at is None
            assert await dispatch_row(daemon, f"{phantom_call}-01-x") is None
            assert await call_row(daemon, phantom_call) is None
            assert all(ids.is_call_id(e["call_id"]) for e in feed), "a poisoned id went out"

            # The feed still flows (a 65 kB topic would have stopped it), before and after a
            # restart on the same journal.
            for round_ in range(2):
                served = await serve_a_call(daemon, phones)
                await wait_for(lambda id_=served: any(e["call_id"] == id_ for e in feed), 10,
                               f"the served call's events on MQTT (round {round_})")
                assert (await ready(daemon))["mqtt"] is True
                if round_ == 0:
                    daemon = await restart(daemon)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def test_poisoned_channel_variables_are_left_out_on_resync(
    daemons: tuple[Start, Restart], phones: Phones
) -> None:
    start, restart = daemons
    daemon = await start()
    number = mobile_number()
    op1 = await phones.operator(1, ring=0.2, talk=None)  # stays on the call
    citizen = await phones.citizen(number, MOBILE, hold=10.0)
    async with AriClient(ari_settings()) as ari:

        async def connected() -> str | None:
            for b in await ari.bridges():
                call_id = legs.call_of_bridge(b.id)
                if call_id and len(b.channels) == 2:
                    return call_id
            return None

        call_id = await wait_for(connected, 15, "the call connected to op1")
        poisoned = {
            "SIAGA112_ARRIVED": "9999-99-99T99:99:99\x01",
            "SIAGA112_PRIORITY": "1\x1b[31m",
            "SIAGA112_FLAGS": ",".join(["a/b", "#", "+", "x" * 300, "\x01", "blocked_bypass"]),
            "SIAGA112_TRUNK": "../../trunk\x07" + "t" * 500,
            "SIAGA112_LINE": "mobile\x01landline",
        }
        for name, value in poisoned.items():
            await ari.set_var(call_id, name, value)
        # A restart while the call is connected: the new daemon reads the tags back.
        daemon = await restart(daemon)
        assert call_id in daemon.stasis.sessions, "the connected call was not taken back"
        result = await citizen.wait(25)
        assert result.ok, result.explain()
        assert (await op1.wait(10)).events("bye_received")

    async def ended() -> Any:
        await daemon.writer.wait_idle(2)
        row = await call_row(daemon, call_id)
        return row if row is not None and row.ended_at is not None else None

    row = await wait_for(ended, 15, "the taken-back call's record ended")
    assert all(ids.is_id(f) for f in row.flags), row.flags
    assert row.trunk is None or ids.is_id(row.trunk), row.trunk
    assert (await ready(daemon))["ready"] is True
    # And a new call is served, from a caller ID no carrier should send.
    await serve_a_call(daemon, phones, caller="0812" + "3" * 150)
