"""A standby's API (HA, docs/cluster.md): it answers reads and refuses every change with a 503
naming the active daemon; the token is checked first; a daemon that lost the lead while a
request was being read does not act. And the leadership loop remembers who leads (what the
refusal names), against a fake database connection."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import create_async_engine
from test_http_api_fakes import FakeDaemon, FakeLeadership, bearer, desk_of, make_settings

from siaga112.api import Api
from siaga112.api.openapi import openapi
from siaga112.api.routing import SAFE_METHODS
from siaga112.leadership import Leadership, Role
from siaga112.model import BlockEntry
from siaga112.settings import HaSettings

BLOCK = {"number": "0812-3456-7890", "hours": 24, "reason": "threats"}


@dataclass
class RecordingPolicy:
    """The block policy, remembering what it was asked to do."""

    done: list[tuple[str, str]] = field(default_factory=list)

    async def block(self, number: str, hours: float | None, reason: str,
                    by: str) -> BlockEntry:
        self.done.append(("block", number))
        return BlockEntry(number=number, blocked_until=None, reason=reason, by=by)

    async def unblock(self, number: str, reason: str, by: str) -> bool:
        self.done.append(("unblock", number))
        return True


class NoCalls:
    """The records, empty, and up."""

    async def list_calls(self, **_: Any) -> list[Any]:
        return []

    async def ping(self, within: float) -> bool:
        return True


# FakeDaemon's engine, which the API never reads (it reaches the records through `repository`):
# never connected.
NOWHERE = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")


def daemon_as(role: str, lead: Any) -> FakeDaemon:
    d = FakeDaemon(settings=make_settings(), engine=NOWHERE, repository=NoCalls(),
                   policy=RecordingPolicy(), role=role, leadership=lead)
    d.desk = desk_of("op1")
    return d


def standby(leader: str | None = "a") -> FakeDaemon:
    return daemon_as("standby", FakeLeadership(node="b", role="standby", leader=leader))


def active() -> FakeDaemon:
    return daemon_as("active", FakeLeadership(node="a", role="active", leader="a"))


async def block(d: FakeDaemon, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with TestClient(TestServer(Api(d).app)) as c:
        resp = await c.post("/blocklist", json=BLOCK,
                            headers=bearer("admin") if headers is None else headers)
        return resp.status, await resp.json()


# -- writes refused, reads served -------------------------------------------------------------


async def test_a_standby_refuses_a_write_naming_the_active_daemon() -> None:
    d = standby()
    status, body = await block(d)
    assert status == 503
    assert body["error"] == "standby"
    assert body["detail"] == ("this daemon (b) is the standby and changes nothing: "
                              "send writes to the active daemon, a")
    assert d.policy.done == []  # nothing was blocked


async def test_a_standby_still_answers_reads() -> None:
    d = standby()
    async with TestClient(TestServer(Api(d).app)) as c:
        calls = await c.get("/calls", headers=bearer("supervisor"))
        queue = await c.get("/queue", headers=bearer("supervisor"))
        health = await c.get("/health")
        ready = await c.get("/ready", headers=bearer("supervisor"))
        assert (calls.status, await calls.json()) == (
            200, {"calls": [], "limit": 100, "offset": 0})
        assert queue.status == 200
        assert await health.json() == {"status": "ok", "role": "standby"}
        assert ready.status == 503 and (await ready.json())["role"] == "standby"


async def test_the_active_daemon_takes_the_same_write() -> None:
    for d in (active(), daemon_as("active", None)):  # HA on, HA off
        status, body = await block(d)
        assert (status, body["number"]) == (201, "+6281234567890")
        assert d.policy.done == [("block", "+6281234567890")]


async def test_a_standby_that_does_not_know_the_active_daemon_says_so() -> None:
    status, body = await block(standby(leader=None))
    assert (status, body["error"]) == (503, "standby")
    assert "the active daemon (which one is not known here" in body["detail"]


def _concrete(path: str) -> str:
    return re.sub(r"{\w+}", "x1", path)


async def test_every_route_that_changes_state_is_refused_on_a_standby() -> None:
    """Before its body is read: no body, a bad one or a good one, the answer is the same."""
    d = standby()
    api = Api(d)
    writes = [r for r in api.routes if r.method not in SAFE_METHODS]
    assert {r.method for r in writes} == {"POST", "DELETE"} and len(writes) >= 10
    async with TestClient(TestServer(api.app)) as c:
        for r in writes:
            resp = await c.request(r.method, _concrete(r.path), headers=bearer("admin"))
            assert (r.method, r.path, resp.status, (await resp.json())["error"]) == (
                r.method, r.path, 503, "standby")
    assert d.policy.done == [] and d.stasis.commands == [] and d.notes == []


async def test_the_openapi_document_lists_the_503_on_writes_only() -> None:
    doc = openapi(Api(active()).routes)
    assert "503" in doc["paths"]["/blocklist"]["post"]["responses"]
    assert "503" in doc["paths"]["/blocklist/{number}"]["delete"]["responses"]
    assert "503" not in doc["paths"]["/blocklist"]["get"]["responses"]


# -- the token first ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, bearer("operator")])
async def test_a_caller_without_the_right_token_learns_nothing_more_from_a_standby(
        headers: dict[str, str]) -> None:
    """401 (no or an unknown token) and 403 (role too low) exactly as from the active daemon:
    no word of standby, nor of which daemon is active."""
    from_standby = await block(standby(), headers)
    from_active = await block(active(), headers)
    assert from_standby == from_active
    assert from_standby[0] in (401, 403)
    assert "standby" not in json.dumps(from_standby[1])


# -- losing the lead ---------------------------------------------------------------------------


async def test_a_leader_that_stepped_down_refuses_writes_before_it_has_stopped() -> None:
    """Daemon.role says "active" until the daemon has stopped; the leadership loop already
    says standby, and knows the new leader."""
    d = daemon_as("active", FakeLeadership(node="a", role="standby", leader="b"))
    status, body = await block(d)
    assert (status, body["error"]) == (503, "standby")
    assert body["detail"].endswith("send writes to the active daemon, b")
    assert d.policy.done == []
    async with TestClient(TestServer(Api(d).app)) as c:
        assert await (await c.get("/health")).json() == {"status": "ok", "role": "standby"}


class SteppingDown:
    """Leads until the API has asked once; then it learns that b leads."""

    node = "a"

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.leader = "a"
        self._role = "active"

    @property
    def role(self) -> str:
        self.asked.set()
        return self._role

    def step_down(self) -> None:
        self._role, self.leader = "standby", "b"


async def test_a_write_whose_body_arrives_after_the_lead_is_lost_does_not_act() -> None:
    lead = SteppingDown()
    d = daemon_as("active", lead)
    raw = json.dumps(BLOCK).encode()

    async def body() -> AsyncIterator[bytes]:
        yield raw[:10]
        await asyncio.wait_for(lead.asked.wait(), 10)  # the request has passed the first check
        lead.step_down()
        yield raw[10:]

    async with TestClient(TestServer(Api(d).app)) as c:
        resp = await c.post("/blocklist", data=body(),
                            headers={**bearer("admin"), "Content-Type": "application/json"})
        answer = await resp.json()
    assert (resp.status, answer["error"]) == (503, "standby")
    assert answer["detail"].endswith("the active daemon, b")
    assert d.policy.done == []


# -- who leads, as the leadership loop saw it --------------------------------------------------


class Conn:
    """An asyncpg connection to the leadership row (holder, epoch, beat); `update` is what the
    takeover's or the heartbeat's UPDATE returns (the new epoch, or None: the row moved on)."""

    def __init__(self, holder: str | None, update: int | None) -> None:
        self.row: dict[str, Any] = {"holder": holder, "beat": 5, "epoch": 7}
        self.update = update

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        return self.row

    async def fetchval(self, query: str, *args: Any) -> Any:
        return self.update if query.startswith("UPDATE") else True

    async def execute(self, query: str, *args: Any) -> str:
        return ""


def leadership(node: str) -> tuple[Leadership, list[str]]:
    calls: list[str] = []

    async def on_active() -> None:
        calls.append("active")

    async def on_lost() -> None:
        calls.append("lost")

    return Leadership("postgresql+asyncpg://x@127.0.0.1:1/none",
                      HaSettings(enabled=True, node=node), on_active, on_lost), calls


async def test_the_leadership_loop_remembers_who_leads() -> None:
    lead, calls = leadership("b")
    assert lead.leader is None  # not looked yet
    await lead._look(Conn(holder="a", update=None))
    assert (lead.role, lead.leader, calls) == (Role.STANDBY, "a", [])

    await lead._look(Conn(holder=None, update=8))  # nobody leads
    assert (lead.role, lead.leader, lead.epoch, calls) == (Role.ACTIVE, "b", 8, ["active"])

    await lead._beat(Conn(holder="c", update=None))  # c took over
    assert (lead.role, lead.leader, calls) == (Role.STANDBY, "c", ["active", "lost"])
