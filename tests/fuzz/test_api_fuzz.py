"""Every HTTP API route, fed hostile path parameters, query strings and bodies through aiohttp's
test client: never a 500, every refusal a JSON error naming the problem, and nothing unchecked
reaches the daemon (fakes record what does: ids are ids, free text is printable)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs

from siaga112 import ids
from siaga112.api import Api
from siaga112.api.routing import Route
from siaga112.model import BlockEntry
from siaga112.records.console import CallerHistory, WallAlerts
from siaga112.records.schemas import DispatchRow, Kpis
from tests.fuzz.strategies import FUZZ, HOSTILE_TEXT, ID_LIKE, JSON_VALUE, dumps, spoiled
from tests.unit.test_http_api_fakes import TOKENS, FakeDaemon, desk_of, make_settings

LIVE = "1700000000.42"
DISPATCH = f"{LIVE}-01-1a2b3c4d"  # agency 01's, of the live call
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class RecordingRepository:
    """Answers every records query with nothing (or the one dispatch); keeps the arguments."""

    seen: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    async def ping(self, within: float) -> bool:
        return False

    async def list_calls(self, *args: Any, **kw: Any) -> list[Any]:
        self.seen.append(("list_calls", (*args, *kw.values())))
        return []

    async def get_call(self, call_id: str) -> None:
        self.seen.append(("get_call", (call_id,)))

    async def mark_call(self, call_id: str, by: str, disposition: str | None = None,
                        category: str | None = None) -> Any:
        self.seen.append(("mark_call", (call_id, disposition, category)))
        raise ValueError(f"no call with call_id {call_id!r}")

    async def agency_dispatch(self, dispatch_id: str, agency: str) -> DispatchRow | None:
        self.seen.append(("agency_dispatch", (dispatch_id, agency)))
        if (dispatch_id, agency) != (DISPATCH, "01"):
            return None
        return DispatchRow(dispatch_id=dispatch_id, call_id=LIVE, agency="01", requested_at=T0)

    async def list_blocks(self, include_expired: bool = False) -> list[Any]:
        return []

    async def referrals(self, only_new: bool = False) -> list[Any]:
        return []

    async def wall_alerts(self, *args: Any, **kw: Any) -> WallAlerts:
        self.seen.append(("wall_alerts", (*args, *kw.values())))
        return WallAlerts(overdue_dispatches=[], overdue_complaints=[])

    async def caller_history(self, number: str, window_hours: float,
                             exclude_call_id: str | None = None) -> CallerHistory:
        self.seen.append(("caller_history", (number, exclude_call_id)))
        return CallerHistory(number=number, calls=[], total=0, marks_in_window=0,
                             window_hours=window_hours)

    async def kpis(self, since: datetime, until: datetime) -> Kpis:
        return Kpis(since=since, until=until, calls=0, offered=0, answered=0,
                    answered_within_10s_pct=None, mean_wait_seconds=None, p90_wait_seconds=None,
                    abandoned_pct=None, prank_pct=None, ghost_pct=None, per_operator=[],
                    per_agency=[])


@dataclass
class RecordingPolicy:
    seen: list[tuple[str, ...]] = field(default_factory=list)

    async def block(self, number: str, hours: float | None, reason: str, by: str) -> BlockEntry:
        self.seen.append(("block", number, reason))
        return BlockEntry(number=number, blocked_until=None, reason=reason, by=by)

    async def unblock(self, number: str, reason: str, by: str) -> bool:
        self.seen.append(("unblock", number, reason))
        return False


@dataclass(repr=False)
class Harness:
    loop: asyncio.AbstractEventLoop
    client: TestClient[Any, Any]
    daemon: FakeDaemon
    routes: list[Route]

    def __repr__(self) -> str:
        return "Harness(the API on a fake daemon)"

    def request(self, method: str, path: str, raw: bytes | None, token: str) -> tuple[int, Any]:
        async def go() -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {TOKENS[token]}"}
            if raw is not None:
                headers["Content-Type"] = "application/json"
            data = io.BytesIO(raw) if raw is not None else None
            async with self.client.request(method, path, data=data, headers=headers) as resp:
                text = await resp.text()
                kind = resp.headers.get("Content-Type", "")
                return resp.status, json.loads(text) if "json" in kind else text
        return self.loop.run_until_complete(go())

    def reset(self) -> None:
        d = self.daemon
        d.moving.clear()
        d.notes.clear()
        d.stasis.commands.clear()
        d.repository.seen.clear()
        d.policy.seen.clear()


@pytest.fixture(scope="module")
def api() -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    daemon = FakeDaemon(settings=make_settings(), engine=engine,
                        repository=RecordingRepository(), policy=RecordingPolicy())
    daemon.desk = desk_of("op1", "op2")
    daemon.stasis.sessions[LIVE] = object()
    app = Api(daemon)

    async def started() -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(app.app))
        await client.start_server()
        return client

    client = loop.run_until_complete(started())
    try:
        with capture_logs() as logs:  # kept in memory: printing them is half the run time
            # The console's event stream never ends by itself (tests/unit/test_console.py).
            yield Harness(loop, client, daemon,
                          [r for r in app.routes if r.media != "text/event-stream"])
        failed = [e for e in logs if e["event"] == "api_handler_failed"]
        assert not failed, failed[:3]
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(engine.dispose())
        loop.close()


# -- what a request is made of ----------------------------------------------------------------

PATH_VALUE = st.one_of(st.sampled_from([LIVE, DISPATCH, "op1", "+6281234567890"]), HOSTILE_TEXT,
                       ID_LIKE)
# A valid body of each body model, spoiled in up to two places (tests/fuzz/strategies.py).
VALID_BODIES: dict[str, list[dict[str, Any]]] = {
    "OperatorStateBody": [{"state": "paused", "reason": "tea break"}, {"state": "available"}],
    "DispositionBody": [{"disposition": "prank", "category": "01"}, {"disposition": "ghost"}],
    "AgencyBody": [{"agency": "01"}],
    "BlockBody": [{"number": "081234567890", "hours": 1, "reason": "threats"},
                  {"number": "+6281234567890", "hours": None, "reason": "court order"}],
    "MovingBody": [{"call_id": LIVE, "agency": "01"}],
    "NoteBody": [{"text": "two people trapped\nsecond floor"}, {"text": "x"}],
    "SupervisionBody": [{"phone": "sup1", "operator": "op1", "mode": "listen"},
                        {"phone": "sup1", "operator": "op2", "mode": "barge"}],
    "CallBackBody": [{"operator": "op1"}, {}],
}
BODY_VALUES = st.one_of(JSON_VALUE, ID_LIKE, st.sampled_from(
    ["available", "paused", "logged_out", "prank", "ghost", "genuine", "01", "12", "13", LIVE,
     DISPATCH, "081234567890", "anonymous"]))
BODIES = {name: spoiled(bodies, BODY_VALUES) for name, bodies in VALID_BODIES.items()}


@st.composite
def requests(draw: st.DrawFn, routes: list[Route]) -> tuple[str, str, bytes | None, str]:
    """A request to any route: hostile path parameters, a query string (the route's own
    parameters and others; to routes that take none, now and then), a body for routes that
    take one."""
    route = draw(st.sampled_from(routes))
    path = route.path
    for name in ("call_id", "dispatch_id", "name", "number", "file"):
        if "{" + name + "}" in path:
            value = draw(PATH_VALUE)
            path = path.replace("{" + name + "}",
                                quote(value.encode("utf-8", "surrogatepass"), safe="") or "x")
    query: list[tuple[str, str]] = []
    if route.query is not None or draw(st.integers(0, 3)) == 0:
        names = list(route.query.model_fields) if route.query else []
        for _ in range(draw(st.integers(0, 2))):
            key = draw(st.one_of(st.sampled_from(names), HOSTILE_TEXT) if names else HOSTILE_TEXT)
            value = draw(st.one_of(st.sampled_from(["true", "10", "2025-01-01", "csv", "op1",
                                                    "081234567890", "prank", "x"]),
                                   HOSTILE_TEXT))
            query.append((key, value))
    if query:
        path += "?" + "&".join(
            quote(k.encode("utf-8", "surrogatepass"), safe="") + "="
            + quote(v.encode("utf-8", "surrogatepass"), safe="") for k, v in query)
    raw: bytes | None = None
    if route.body is not None:
        raw = draw(st.one_of(st.builds(dumps, BODIES[route.body.__name__]),
                             st.builds(dumps, BODIES[route.body.__name__]),
                             st.builds(dumps, BODIES[route.body.__name__]),
                             st.builds(dumps, JSON_VALUE), st.binary(max_size=100)))
    token = draw(st.sampled_from(["admin", "admin", "operator", "agency", "supervisor"]))
    return route.method, path, raw, token


def _check(api: Harness, path: str, status: int, answer: Any) -> None:
    assert status != 500, answer
    assert status < 500 or status == 503, (status, answer)
    if len(path) > 8000 and status == 400:
        return  # aiohttp's own parser refused the request line: our code never saw it
    if path.startswith("/ready") and status == 503:
        assert answer["ready"] is False  # readiness says what is down, in its own shape
    elif status >= 400:
        assert isinstance(answer, dict) and set(answer) == {"error", "detail"}, answer
        assert answer["error"] and isinstance(answer["error"], str)
    d = api.daemon
    for agency, call_id, dispatch_id, _by in d.moving:
        assert ids.is_agency_code(agency) and ids.is_call_id(call_id) and ids.is_id(dispatch_id)
        assert (call_id, dispatch_id, agency) == (LIVE, DISPATCH, "01")  # the agency's own
    for call_id, text, _by in d.notes:
        assert ids.is_call_id(call_id) and 0 < len(text) <= 2000
        assert all(c.isprintable() or c == "\n" for c in text), repr(text)[:200]
    for call_id, _kind, arg, _by in d.stasis.commands:
        assert ids.is_call_id(call_id) and arg.isprintable()
    for _name, args in d.repository.seen:
        for a in args:
            if isinstance(a, str):
                assert a.isprintable() and len(a) <= ids.ID_MAX, repr(a)[:200]
    for _kind, number, reason in d.policy.seen:
        assert number.startswith("+62") and ids.is_note(reason)
    for op in d.desk.snapshot():
        assert op.reason is None or ids.is_note(op.reason)


@FUZZ
@given(data=st.data())
def test_every_route_takes_any_path_query_and_body_without_a_500(
    api: Harness, data: st.DataObject
) -> None:
    method, path, raw, token = data.draw(requests(api.routes))
    api.reset()
    status, answer = api.request(method, path, raw, token)
    _check(api, path, status, answer)
