"""The HTTP API's records endpoints against the real Repository and BlockPolicy on the dev
PostgreSQL (var/pg, port 5432): the records tests' fixtures give a fresh database for this
module and empty tables for each test."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.api import Api
from siaga112.model import CallEvent, CallEventType
from siaga112.records.apply import store
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.records.tables import calls, dispatches, referrals
from siaga112.settings import PolicySettings
from tests.unit.test_http_api_fakes import FakeDaemon, bearer, make_settings

T = CallEventType
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def daemon(clean: AsyncEngine) -> FakeDaemon:
    engine = clean
    policy = BlockPolicy(engine, PolicySettings())
    return FakeDaemon(settings=make_settings(), engine=engine,
                      repository=Repository(engine, policy), policy=policy)


@pytest.fixture
async def client(daemon: FakeDaemon) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(Api(daemon).app)) as c:
        yield c


async def record_call(engine: AsyncEngine, call_id: str, caller: str, start: datetime,
                      disposition: str = "genuine", agency: str | None = None) -> None:
    """A whole call, arrival to end, answered by op1 after 4 s."""
    steps: list[tuple[CallEventType, float, dict[str, Any]]] = [
        (T.ARRIVED, 0, {"caller_raw": caller, "caller": caller, "line_type": "mobile",
                        "trunk": "tsel"}),
        (T.QUEUED, 1, {"position": 1, "priority": False}),
        (T.CONNECTED, 4, {"operator": "op1"}),
    ]
    if agency:
        did = f"{call_id}-{agency}-x"
        steps.append((T.AGENCY_REQUESTED, 10, {"agency": agency, "dispatch_id": did}))
    steps.append((T.ENDED, 30, {"disposition": disposition, "cause": 16, "hangup_by": "caller"}))
    evs = [CallEvent(call_id=call_id, seq=n, type=typ, at=start + timedelta(seconds=dt),
                     data=data) for n, (typ, dt, data) in enumerate(steps, 1)]
    await store(engine, BlockPolicy(engine, PolicySettings()), evs)


async def answer(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_ready_when_everything_answers(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    daemon.events.connected.set()
    data = await answer(await client.get("/ready", headers=bearer("supervisor")))
    assert data == {"ready": True, "role": "active", "ari": True, "database": True, "mqtt": True,
                    "journal_backlog": 0, "journal": "ok", "journal_problems": [],
                    "overflow": False, "overflow_since": None}


async def test_calls_list_filters_and_pages(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    await record_call(daemon.engine, "c1", "+6281111111111", T0)
    await record_call(daemon.engine, "c2", "+6282222222222", T0 + timedelta(hours=1), "prank")
    await record_call(daemon.engine, "c3", "+6281111111111", T0 + timedelta(hours=2))
    sup = bearer("supervisor")

    everything = await answer(await client.get("/calls", headers=sup))
    assert [c["call_id"] for c in everything["calls"]] == ["c3", "c2", "c1"]
    assert (everything["limit"], everything["offset"]) == (100, 0)

    # the caller in the local form a person types is normalised to E.164
    mine = await answer(await client.get("/calls", params={"caller": "0811-1111-1111"},
                                         headers=sup))
    assert [c["call_id"] for c in mine["calls"]] == ["c3", "c1"]

    prank = await answer(await client.get("/calls?disposition=prank", headers=sup))
    assert [c["call_id"] for c in prank["calls"]] == ["c2"]

    window = await answer(await client.get(
        "/calls", params={"since": "2025-03-01T08:30:00", "until": "2025-03-01T09:30:00+00:00"},
        headers=sup))
    assert [c["call_id"] for c in window["calls"]] == ["c2"]

    page = await answer(await client.get("/calls?limit=1&offset=1&operator=op1", headers=sup))
    assert [c["call_id"] for c in page["calls"]] == ["c2"]


async def test_one_call_with_events_and_dispatches(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    await record_call(daemon.engine, "c1", "+6281111111111", T0, agency="02")
    data = await answer(await client.get("/calls/c1", headers=bearer("supervisor")))
    assert data["live"] is False
    assert data["call"]["caller"] == "+6281111111111"
    assert [e["type"] for e in data["events"]] == [
        "arrived", "queued", "connected", "agency_requested", "ended"]
    assert [(d["dispatch_id"], d["agency"]) for d in data["dispatches"]] == [("c1-02-x", "02")]

    missing = await client.get("/calls/nope", headers=bearer("supervisor"))
    assert (await answer(missing, 404))["error"] == "call_not_found"


async def test_a_live_call_not_yet_written_is_found(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    daemon.stasis.sessions["c9"] = object()
    data = await answer(await client.get("/calls/c9", headers=bearer("supervisor")))
    assert data == {"call_id": "c9", "live": True, "call": None, "events": [],
                    "dispatches": []}


async def test_marking_an_ended_call_goes_to_its_record(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    await record_call(daemon.engine, "c1", "+6281111111111", T0)
    data = await answer(await client.post("/calls/c1/disposition", headers=bearer("operator"),
                                          json={"disposition": "ghost", "category": "12"}))
    assert (data["live"], data["result"]) == (False, "ok")
    assert (data["call"]["disposition"], data["call"]["category"]) == ("ghost", "12")
    assert daemon.stasis.commands == []
    marks = (await daemon.repository.get_call("c1")).events
    assert [(e.type, e.data.get("by")) for e in marks][-2:] == [("disposition", "op1"),
                                                             ("category", "op1")]

    missing = await client.post("/calls/nope/disposition", headers=bearer("operator"),
                                json={"disposition": "prank"})
    body = await answer(missing, 404)
    assert body["error"] == "call_not_found" and "nope" in body["detail"]


async def test_blocking_listing_and_unblocking_a_number(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    admin = bearer("admin")
    blocked = await answer(await client.post(
        "/blocklist", headers=admin,
        json={"number": "0812-3456-7890", "hours": 2, "reason": "threats"}), 201)
    assert (blocked["number"], blocked["reason"], blocked["by"]) == (
        "+6281234567890", "threats", "root")
    assert datetime.fromisoformat(blocked["blocked_until"]) > datetime.now(UTC)
    forever = await answer(await client.post(
        "/blocklist", headers=admin,
        json={"number": "+6289999999999", "hours": None, "reason": "court order"}), 201)
    assert forever["blocked_until"] is None

    listed = await answer(await client.get("/blocklist", headers=bearer("supervisor")))
    assert [(b["number"], b["active"]) for b in listed["blocks"]] == [
        ("+6281234567890", True), ("+6289999999999", True)]

    no_reason = await client.delete("/blocklist/+6281234567890", headers=admin)
    assert (await answer(no_reason, 422))["error"] == "bad_query"
    gone = await client.delete("/blocklist/+6281234567890?reason=appeal", headers=admin)
    assert await answer(gone) == {"number": "+6281234567890", "unblocked": True}
    again = await client.delete("/blocklist/081234567890?reason=appeal", headers=admin)
    assert (await answer(again, 404))["error"] == "not_blocked"

    active = await answer(await client.get("/blocklist", headers=bearer("supervisor")))
    assert [b["number"] for b in active["blocks"]] == ["+6289999999999"]
    both = await answer(await client.get("/blocklist?include_expired=true",
                                         headers=bearer("supervisor")))
    assert {(b["number"], b["active"]) for b in both["blocks"]} == {
        ("+6281234567890", False), ("+6289999999999", True)}


async def test_referrals_as_json_and_as_csv(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    async with daemon.engine.begin() as conn:
        await conn.execute(insert(referrals).values(
            number="+6281234567890", count=11, first_at=T0, last_at=T0 + timedelta(days=3)))
    sup = bearer("supervisor")
    data = await answer(await client.get("/referrals", headers=sup))
    assert [(r["number"], r["count"]) for r in data["referrals"]] == [("+6281234567890", 11)]

    resp = await client.get("/referrals?format=csv", headers=sup)
    assert resp.status == 200
    assert resp.content_type == "text/csv"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="referrals-')
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [(r["number"], r["count"], r["exported_at"]) for r in rows] == [
        ("+6281234567890", "11", "")]
    assert datetime.fromisoformat(rows[0]["first_at"]) == T0


async def test_kpis_over_a_window(client: TestClient[Any, Any], daemon: FakeDaemon) -> None:
    await record_call(daemon.engine, "c1", "+6281111111111", T0)
    await record_call(daemon.engine, "c2", "+6282222222222", T0 + timedelta(minutes=5), "prank")
    await record_call(daemon.engine, "c3", "+6283333333333", T0 - timedelta(days=2))
    data = await answer(await client.get(
        "/kpis", params={"since": "2025-03-01T00:00:00Z", "until": "2025-03-02T00:00:00Z"},
        headers=bearer("supervisor")))
    assert (data["calls"], data["answered"], data["prank_pct"]) == (2, 2, 50.0)
    assert [o["operator"] for o in data["per_operator"]] == ["op1"]

    recent = await answer(await client.get("/kpis", headers=bearer("supervisor")))
    assert recent["calls"] == 0  # default: the last 24 h


# -- an agency touches only its own dispatches ------------------------------------------------


async def _dispatch_rows(engine: AsyncEngine) -> dict[str, tuple[str, str | None, bool]]:
    """dispatch id -> (call id, agency, moving_at set)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(dispatches))).mappings().all()
    return {r["dispatch_id"]: (r["call_id"], r["agency"], r["moving_at"] is not None)
            for r in rows}


async def _call_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(calls.c.call_id))).scalars())


async def test_the_repository_finds_a_dispatch_only_for_its_own_agency(
    daemon: FakeDaemon,
) -> None:
    repo: Repository = daemon.repository
    await record_call(daemon.engine, "c1", "+6281111111111", T0, agency="01")
    await record_call(daemon.engine, "c2", "+6282222222222", T0, agency="02")
    # a phantom dispatch: a moving event that no request preceded (what the old API stored)
    await store(daemon.engine, daemon.policy, [CallEvent(
        call_id="c3", seq=0, type=T.TEAM_MOVING,
        data={"agency": "01", "dispatch_id": "c3-01-x", "by": "mqtt"})])

    found = await repo.agency_dispatch("c1-01-x", "01")
    assert found is not None and (found.call_id, found.agency) == ("c1", "01")
    assert await repo.agency_dispatch("c2-02-x", "01") is None  # another agency's
    assert await repo.agency_dispatch("c9-01-x", "01") is None  # none at all
    assert await repo.agency_dispatch("c3-01-x", "01") is None  # never requested


async def test_an_agency_token_moves_its_own_dispatch_and_no_other(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    await record_call(daemon.engine, "c1", "+6281111111111", T0, agency="01")
    await record_call(daemon.engine, "c2", "+6282222222222", T0, agency="02")
    before_calls = await _call_ids(daemon.engine)
    agency01 = bearer("agency")  # damkar, agency 01

    # agency 02's dispatch, claimed as agency 01's: not found, nothing recorded
    resp = await client.post("/dispatches/c2-02-x/moving", headers=agency01,
                             json={"call_id": "c2", "agency": "01"})
    assert (await answer(resp, 404))["error"] == "dispatch_not_found"
    # a dispatch nobody has: not found, so no phantom row
    resp = await client.post("/dispatches/c9-01-x/moving", headers=agency01,
                             json={"call_id": "c9", "agency": "01"})
    assert (await answer(resp, 404))["error"] == "dispatch_not_found"
    # agency 01's own dispatch named with agency 02's call
    resp = await client.post("/dispatches/c1-01-x/moving", headers=agency01,
                             json={"call_id": "c2", "agency": "01"})
    assert (await answer(resp, 409))["error"] == "dispatch_of_another_call"
    # an operator cannot move agency 02's dispatch in agency 01's name either
    resp = await client.post("/dispatches/c2-02-x/moving", headers=bearer("operator"),
                             json={"call_id": "c2", "agency": "01"})
    assert (await answer(resp, 404))["error"] == "dispatch_not_found"
    assert daemon.moving == []

    # its own: taken, and the event the daemon records sets moving_at on that dispatch only
    resp = await client.post("/dispatches/c1-01-x/moving", headers=agency01,
                             json={"call_id": "c1", "agency": "01"})
    assert await answer(resp, 202) == {"dispatch_id": "c1-01-x", "call_id": "c1",
                                       "agency": "01", "accepted": True}
    assert daemon.moving == [("01", "c1", "c1-01-x", "damkar")]
    agency, call_id, dispatch_id, by = daemon.moving[0]
    await store(daemon.engine, daemon.policy, [CallEvent(  # as app.Daemon.team_moving emits it
        call_id=call_id, seq=0, type=T.TEAM_MOVING,
        data={"agency": agency, "dispatch_id": dispatch_id, "by": by})])
    assert await _dispatch_rows(daemon.engine) == {"c1-01-x": ("c1", "01", True),
                                                   "c2-02-x": ("c2", "02", False)}
    assert await _call_ids(daemon.engine) == before_calls
