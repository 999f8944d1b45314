"""Events out and the operations API, end to end: real SIPp calls through the test PBX, the
daemon's MQTT stream on the dev Mosquitto, and its HTTP API on 127.0.0.1:8112."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import aiomqtt
import pytest

from siaga112.model import CallEvent, CallEventType, OperatorSnapshot, OperatorState, QueueSnapshot
from siaga112_testkit.devstack.mosquitto import MosquittoServer
from tests.conftest import STATE, wait_for
from tests.integration.phones import MOBILE, e164, mobile_number
from tests.integration.test_call_path import call_of, record

pytestmark = pytest.mark.integration

API = "http://127.0.0.1:8112"
BROKER = MosquittoServer(STATE, 1883)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN, OPERATOR, SUPERVISOR = (bearer(f"{r}-token") for r in ("admin", "operator", "supervisor"))


# -- an MQTT subscriber ---------------------------------------------------------------------


@dataclass
class Tap:
    """A plain aiomqtt client recording what it receives on its filters."""

    filters: tuple[str, ...]
    received: list[aiomqtt.Message] = field(default_factory=list)
    _client: aiomqtt.Client | None = None
    _reader: asyncio.Task[None] | None = None

    async def open(self) -> Tap:
        client = aiomqtt.Client(BROKER.host, BROKER.port, identifier=f"tap-{uuid.uuid4().hex}")
        await client.__aenter__()
        for f in self.filters:
            await client.subscribe(f, qos=1)
        self._client = client
        self._reader = asyncio.create_task(self._read(client))
        return self

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                self.received.append(message)
        except aiomqtt.MqttError:
            pass  # the broker went away: the test opens a new tap

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._client is not None:
            try:
                await self._client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass
        self._client = self._reader = None

    def on(self, topic: str) -> list[aiomqtt.Message]:
        """What came on topic, or on any topic a filter with wildcards matches."""
        return [m for m in self.received if m.topic.matches(topic)]

    def call_events(self, topic: str, call_id: str) -> list[CallEvent]:
        events = [CallEvent.model_validate_json(_bytes(m)) for m in self.on(topic)]
        return [e for e in events if e.call_id == call_id]


def _bytes(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    return payload if isinstance(payload, bytes) else str(payload).encode()


@pytest.fixture
async def tap() -> AsyncIterator[Callable[..., Any]]:
    opened: list[Tap] = []

    async def make(*filters: str) -> Tap:
        t = await Tap(filters).open()
        opened.append(t)
        return t

    yield make
    for t in opened:
        await t.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(API) as session:
        yield session


def types_of(events: list[CallEvent]) -> list[str]:
    return [e.type.value for e in events]


def assert_in_order(events: list[CallEvent]) -> None:
    """seq strictly increasing; the call path's steps in their order; ended last but for the
    recording's note that follows it."""
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    types = types_of(events)
    expected = ["arrived", "answered", "screened", "queued", "ringing", "connected", "ended"]
    assert [t for t in types if t in expected] == expected, types
    assert set(types[types.index("ended") + 1:]) <= {"recording"}, types


async def retained(tap: Callable[..., Any], topic: str) -> aiomqtt.Message:
    """The retained message a new subscriber gets first on topic."""
    t = await tap(topic)
    await wait_for(lambda: t.on(topic), 5, f"the retained message on {topic}")
    first = t.on(topic)[0]
    assert first.retain, f"{topic}: the first message a new subscriber gets must be retained"
    await t.close()
    return first


async def mqtt_settled(daemon) -> None:
    n = daemon.notifier
    try:
        await wait_for(lambda: n.connected and n.pending == 0, 10,
                       "the notifier connected with nothing pending")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: connected={n.connected} pending={n.pending} "
                             f"live calls={list(daemon.stasis.sessions)}") from None


# -- 1. a call's events on MQTT ----------------------------------------------------------------


async def test_a_calls_steps_reach_mqtt_in_order(daemon_factory, phones, tap) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    p = daemon.settings.mqtt.topic_prefix
    await mqtt_settled(daemon)
    live = await tap(daemon.notifier.topics.all_calls, f"{p}/queue", f"{p}/operators/op1")
    await phones.operator(1, ring=0.3, talk=None)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=2.0, audio=phones.pcaps.speech(10))
    call_id = await call_of(daemon, e164(number))
    result = await citizen.wait(20)
    assert result.ok, result.explain()

    per_call = f"{p}/calls/{call_id}/events"
    await wait_for(lambda: "ended" in types_of(live.call_events(per_call, call_id)), 10,
                   f"ended on {per_call}")
    on_call = live.call_events(per_call, call_id)
    assert_in_order(on_call)
    ids = [e.event_id for e in on_call]
    # Each step once: the all-calls subscription (calls/+/events) got no second copy of any.
    everywhere = [e.event_id for e in live.call_events(daemon.notifier.topics.all_calls, call_id)]
    assert everywhere == ids and len(set(ids)) == len(ids)
    arrived = on_call[0]
    assert arrived.data["caller"] == e164(number) and arrived.data["line_type"] == "mobile"
    connected = next(e for e in on_call if e.type is CallEventType.CONNECTED)
    assert connected.data["operator"] == "op1"
    assert next(e for e in on_call if e.type is CallEventType.QUEUED).data["position"] == 1

    # The same steps are the call's record.
    detail = await record(daemon, call_id)
    assert [str(e.event_id) for e in detail.events][: len(ids)] == [str(i) for i in ids]

    # Live state while it happened: op1 rang, took the call and is free again. The queue held
    # the caller only within one step of the event loop (op1 was free): that snapshot is
    # coalesced into the next, and the queue stays empty as far as MQTT is concerned.
    await wait_for(lambda: daemon.desk.get("op1").state is OperatorState.AVAILABLE, 5)
    await mqtt_settled(daemon)

    def op1_states() -> list[str]:
        return [OperatorSnapshot.model_validate_json(_bytes(m)).state.value
                for m in live.on(f"{p}/operators/op1")]

    # Published is not yet received by our subscriber: wait for the last change to arrive.
    await wait_for(lambda: op1_states()[-1:] == ["available"], 5, "op1 available on MQTT")
    op_states = op1_states()
    assert {"ringing", "on_call"} <= set(op_states) and op_states[-1] == "available", op_states
    lengths = [QueueSnapshot.model_validate_json(_bytes(m)).length for m in live.on(f"{p}/queue")]
    assert lengths == [0], lengths
    # Unchanged state is not sent again: one message per change of op1, never the same twice.
    assert all(a != b for a, b in zip(op_states, op_states[1:], strict=False)), op_states

    # A new subscriber gets the present state at once, retained.
    op1 = OperatorSnapshot.model_validate_json(_bytes(await retained(tap, f"{p}/operators/op1")))
    assert (op1.state, op1.call_id) == (OperatorState.AVAILABLE, None)
    queue = QueueSnapshot.model_validate_json(_bytes(await retained(tap, f"{p}/queue")))
    assert (queue.length, queue.entries) == (0, [])
    status = await retained(tap, f"{p}/status")
    assert status.payload == b"online"


# -- 2. the API with real data ----------------------------------------------------------------


async def get_json(http: aiohttp.ClientSession, path: str, headers: dict[str, str],
                   status: int = 200, **params: Any) -> Any:
    async with http.get(path, headers=headers, params=params) as resp:
        body = await resp.json()
        assert resp.status == status, (path, resp.status, body)
        return body


async def test_the_api_answers_with_real_data(daemon_factory, phones, http) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    daemon = await daemon_factory(logged_in=["op1"],
                                  policy={"prank_block_threshold": 1, "referral_threshold": 1})
    await mqtt_settled(daemon)
    assert await get_json(http, "/health", {}) == {"status": "ok", "role": "active"}
    ready = await get_json(http, "/ready", SUPERVISOR)
    assert (ready["ready"], ready["ari"], ready["database"], ready["mqtt"]) == (True,) * 4

    # Two calls from one number, each answered by op1 (a fresh desk phone for each call).
    number = mobile_number()
    call_ids = []
    for _ in range(2):
        desk = await phones.operator(1, ring=0.3, talk=None)
        citizen = await phones.citizen(number, MOBILE, hold=2.5)
        call_id = await call_of(daemon, e164(number))
        await wait_for(lambda c=call_id: daemon.stasis.sessions[c].operator_channel, 10,
                       "ringing op1")
        ops = (await get_json(http, "/operators", SUPERVISOR))["operators"]
        op1 = next(o for o in ops if o["operator"] == "op1")
        assert op1["state"] in ("ringing", "on_call") and op1["call_id"] == call_id
        queue = await get_json(http, "/queue", SUPERVISOR)
        assert queue["length"] == len(queue["entries"]) == 0  # op1 took it at once
        live = await get_json(http, f"/calls/{call_id}", SUPERVISOR)
        assert live["live"] is True
        assert (await citizen.wait(20)).ok
        assert (await desk.wait(10)).ok
        detail = await record(daemon, call_id)
        assert (detail.call.operator, detail.call.disposition) == ("op1", "genuine")
        await wait_for(lambda: daemon.desk.get("op1").state is OperatorState.AVAILABLE, 5)
        call_ids.append(call_id)

    # One call, with its events.
    one = await get_json(http, f"/calls/{call_ids[0]}", SUPERVISOR)
    assert one["live"] is False and one["call"]["operator"] == "op1"
    assert one["call"]["disposition"] == "genuine" and one["call"]["caller"] == e164(number)
    assert [e["type"] for e in one["events"]][:4] == ["arrived", "answered", "screened", "queued"]
    assert "ended" in [e["type"] for e in one["events"]]
    assert one["dispatches"] == []

    # Calls with filters and paging.
    mine = await get_json(http, "/calls", SUPERVISOR, caller=number,
                          since=started.isoformat())
    assert [c["call_id"] for c in mine["calls"]] == call_ids[::-1]  # newest first
    paged = await get_json(http, "/calls", SUPERVISOR, caller=number, limit=1, offset=1)
    assert [c["call_id"] for c in paged["calls"]] == [call_ids[0]]
    by_op = await get_json(http, "/calls", SUPERVISOR, operator="op1", disposition="genuine",
                           since=started.isoformat())
    assert set(call_ids) <= {c["call_id"] for c in by_op["calls"]}
    none = await get_json(http, "/calls", SUPERVISOR, caller=number, disposition="ghost")
    assert none["calls"] == []

    # Marked prank after the fact, twice: more than one prank blocks and refers the number.
    for call_id in call_ids:
        async with http.post(f"/calls/{call_id}/disposition", headers=OPERATOR,
                             json={"disposition": "prank", "category": "12"}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert body["live"] is False and body["call"]["disposition"] == "prank"
        assert body["call"]["category"] == "12"
    blocks = await get_json(http, "/blocklist", SUPERVISOR)
    assert e164(number) in [b["number"] for b in blocks["blocks"] if b["active"]]
    referrals = await get_json(http, "/referrals", SUPERVISOR)
    assert e164(number) in [r["number"] for r in referrals["referrals"]]
    async with http.get("/referrals", headers=SUPERVISOR, params={"format": "csv"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert any(r["number"] == e164(number) and int(r["count"]) >= 2 for r in rows), rows

    # The blocklist by hand: add, list, remove.
    other = mobile_number()
    async with http.post("/blocklist", headers=ADMIN,
                         json={"number": other, "hours": 2, "reason": "test: abusive"}) as resp:
        added = await resp.json()
        assert resp.status == 201, added
    assert added["number"] == e164(other) and added["by"] == "test admin"
    listed = await get_json(http, "/blocklist", SUPERVISOR)
    assert e164(other) in [b["number"] for b in listed["blocks"] if b["active"]]
    async with http.delete(f"/blocklist/{e164(other)}", headers=ADMIN,
                           params={"reason": "test: done"}) as resp:
        assert resp.status == 200 and await resp.json() == {"number": e164(other),
                                                            "unblocked": True}
    listed = await get_json(http, "/blocklist", SUPERVISOR)
    assert e164(other) not in [b["number"] for b in listed["blocks"] if b["active"]]

    # KPIs over this test's period (other tests' calls may share it: at least ours).
    kpis = await get_json(http, "/kpis", SUPERVISOR, since=started.isoformat())
    assert kpis["calls"] >= 2 and kpis["answered"] >= 2
    assert kpis["mean_wait_seconds"] is not None and kpis["p90_wait_seconds"] is not None
    assert kpis["prank_pct"] is not None and kpis["prank_pct"] > 0
    assert "op1" in [o["operator"] for o in kpis["per_operator"]]

    # Metrics: this daemon's own counters.
    async with http.get("/metrics", headers=SUPERVISOR) as resp:
        assert resp.status == 200
        metrics = await resp.text()
    assert 'siaga112_calls_total{outcome="genuine"} 2.0' in metrics
    assert "siaga112_wait_seconds_count 2.0" in metrics
    assert "siaga112_queue_length 0.0" in metrics
    assert "siaga112_ari_request_seconds_count" in metrics

    spec = await get_json(http, "/openapi.json", SUPERVISOR)
    assert spec["openapi"].startswith("3.") and "/calls/{call_id}" in spec["paths"]
    assert "/metrics" in spec["paths"] and "Kpis" in spec["components"]["schemas"]


# -- 3. refused requests -----------------------------------------------------------------------


REFUSED = [  # method, path, headers, body, status, error, a word the detail must name
    ("GET", "/queue", {}, None, 401, "unauthorised", "missing Authorization"),
    ("GET", "/queue", bearer("nope"), None, 401, "unauthorised", "unknown token"),
    ("GET", "/metrics", {}, None, 401, "unauthorised", "missing Authorization"),
    ("POST", "/blocklist", SUPERVISOR, {"number": "081234567890", "hours": 1, "reason": "x"},
     403, "forbidden", "needs role admin"),
    ("POST", "/calls/x/disposition", SUPERVISOR, {"disposition": "prank"}, 403, "forbidden",
     "needs role operator"),
    ("POST", "/blocklist", ADMIN, b"{not json", 400, "malformed_json", "json"),
    ("POST", "/blocklist", ADMIN, {"number": "081234567890", "hours": -1, "reason": "x"},
     422, "bad_body", "hours"),
    ("POST", "/blocklist", ADMIN, {"number": "12", "hours": 1, "reason": "x"}, 422,
     "bad_number", "'12'"),
    ("POST", "/calls/x/disposition", OPERATOR, {"disposition": "maybe"}, 422, "bad_body",
     "disposition"),
    ("GET", "/calls?limit=0", SUPERVISOR, None, 422, "bad_query", "limit"),
    ("GET", "/calls?sort=up", SUPERVISOR, None, 422, "bad_query", "sort"),
    ("GET", "/calls/no-such-call", SUPERVISOR, None, 404, "call_not_found", "no-such-call"),
]


async def test_the_operator_marks_the_call_the_instant_the_caller_hangs_up(
    daemon_factory, phones, http
) -> None:
    """The caller hangs up; the operator presses "prank" at once. The record's end is still in
    the writer's journal (it stores every database.store_interval): the mark is taken on the
    record all the same, after the call's last event, never a 404."""
    daemon = await daemon_factory(logged_in=["op1"])
    desk = await phones.operator(1, ring=0.3, talk=None)  # stays until the caller leaves
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=2.0)
    call_id = await call_of(daemon, e164(number))
    await wait_for(lambda: call_id not in daemon.stasis.sessions, 20, "the caller's hang-up")
    async with http.post(f"/calls/{call_id}/disposition", headers=OPERATOR,
                         json={"disposition": "prank"}) as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert body["live"] is False and body["call"]["disposition"] == "prank", body
    assert (await citizen.wait(10)).ok and (await desk.wait(10)).ok
    detail = await record(daemon, call_id)
    [ended] = [e for e in detail.events if e.type == "ended"]
    marks = [e for e in detail.events if e.type == "disposition"]
    assert marks and marks[-1].seq > ended.seq, [(e.type, e.seq) for e in detail.events]
    assert detail.call.operator == "op1" and detail.call.disposition == "prank"


async def test_refused_requests_name_the_problem(daemon_factory, http) -> None:
    await daemon_factory(logged_in=[])
    for method, path, headers, body, status, error, names in REFUSED:
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["data"] = body
            kwargs["headers"] = {**headers, "Content-Type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        async with http.request(method, path, **kwargs) as resp:
            answer = await resp.json()
            case = (method, path, body, resp.status, answer)
            assert resp.status == status, case
            assert resp.content_type == "application/json", case
            if status == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Bearer"), case
        assert answer["error"] == error, case
        assert names.lower() in str(answer["detail"]).lower(), case


# -- 4. the broker stopped mid-call ------------------------------------------------------------


@pytest.fixture
async def broker_restored() -> AsyncIterator[None]:
    """Whatever a test does to the dev broker, it runs again afterwards."""
    yield
    if not BROKER.running:
        await asyncio.to_thread(BROKER.start)


async def test_the_broker_stopped_mid_call_harms_neither_call_nor_events(
    daemon_factory, phones, tap, broker_restored, monkeypatch
) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    notifier = daemon.notifier
    p = daemon.settings.mqtt.topic_prefix
    await mqtt_settled(daemon)
    # The notifier's reconnect waits until the test's new subscriber is in place, so that
    # what it delivers on return is seen (the dev broker keeps no sessions across restarts).
    back = asyncio.Event()
    real_sleep = notifier._sleep

    async def gated_sleep(delay: float) -> None:
        await back.wait()
        await real_sleep(delay)

    monkeypatch.setattr(notifier, "_sleep", gated_sleep)
    stream = f"{p}/calls/+/events"
    before = await tap(stream)
    await phones.operator(1, ring=0.3, talk=None)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=5.0, audio=phones.pcaps.speech(10))
    call_id = await call_of(daemon, e164(number))
    await wait_for(lambda: "connected" in types_of(before.call_events(stream, call_id)), 10,
                   "connected on MQTT")
    await mqtt_settled(daemon)

    assert await asyncio.to_thread(BROKER.stop)
    await wait_for(lambda: not notifier.connected, 10, "the notifier to see the broker gone")
    result = await citizen.wait(20)  # the call goes on and ends while the broker is down
    assert result.ok, result.explain()
    detail = await record(daemon, call_id)
    assert detail.call.disposition == "genuine" and detail.call.operator == "op1"
    stored = {e.type for e in detail.events}
    assert {"arrived", "queued", "connected", "ended"} <= stored
    assert notifier.pending > 0 and notifier.dropped == 0

    await asyncio.to_thread(BROKER.start)
    after = await tap(stream, f"{p}/operators/op1")
    back.set()
    await wait_for(lambda: "ended" in types_of(after.call_events(stream, call_id)), 15,
                   "ended on MQTT after the broker came back")
    await mqtt_settled(daemon)
    # At least once: what was acknowledged before the stop may come again; dedupe by id.
    seen = {e.event_id: e for t in (before, after) for e in t.call_events(stream, call_id)}
    assert_in_order(sorted(seen.values(), key=lambda e: e.seq))
    detail = await record(daemon, call_id)
    ended_seq = next(e.seq for e in detail.events if e.type == "ended")
    assert {str(e.event_id) for e in detail.events if e.seq <= ended_seq} <= {
        str(i) for i in seen}
    assert notifier.dropped == 0
    # Retained state is rebuilt on the restarted broker (it keeps nothing across restarts).
    op1 = OperatorSnapshot.model_validate_json(_bytes(await retained(tap, f"{p}/operators/op1")))
    assert op1.state is OperatorState.AVAILABLE
