"""The HTTP API against a fake daemon: auth, validation, the live endpoints, readiness,
metrics and the OpenAPI document. The records endpoints against the real repository are in
test_http_api_records.py. The database here is a closed port: every query fails at once."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from structlog.testing import capture_logs
from test_http_api_fakes import (
    TOKENS,
    FakeDaemon,
    FakeQueue,
    KnownDispatches,
    bearer,
    desk_of,
    make_settings,
    waiting_caller,
)

from siaga112.api import Api
from siaga112.api.auth import Authenticator, AuthError, Role
from siaga112.api.errors import CALL_FAILURES
from siaga112.api.openapi import openapi
from siaga112.call import errors as call_errors
from siaga112.call.errors import (
    CallNotConnected,
    CallNotLive,
    CallNotResponding,
    CommandError,
    UnknownAgency,
    UnknownCategory,
)
from siaga112.call.items import CommandKind, CommandResult
from siaga112.model import CallState, OperatorState
from siaga112.notifier import NullNotifier
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.settings import PolicySettings

LIVE = "1700000000.42"


@pytest.fixture(scope="module")
async def dead_engine() -> AsyncIterator[AsyncEngine]:
    """A database nobody listens for (port 1): connecting fails at once."""
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none",
                                 connect_args={"timeout": 1})
    yield engine
    await engine.dispose()


@pytest.fixture
def daemon(dead_engine: AsyncEngine) -> FakeDaemon:
    d = FakeDaemon(settings=make_settings(), engine=dead_engine,
                   repository=Repository(dead_engine),
                   policy=BlockPolicy(dead_engine, PolicySettings()))
    d.desk = desk_of("op1", "op2")
    d.queue = FakeQueue([waiting_caller()])
    d.stasis.sessions[LIVE] = object()
    return d


@pytest.fixture
async def client(daemon: FakeDaemon) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(Api(daemon).app)) as c:
        yield c


async def body_of(resp: Any) -> dict[str, Any]:
    data: dict[str, Any] = await resp.json()
    return data


# -- auth ------------------------------------------------------------------------------------


async def test_health_needs_no_token(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "role": "active"}


@pytest.mark.parametrize("headers, named", [
    ({}, "missing Authorization"),
    ({"Authorization": "Bearer not-a-token"}, "unknown token"),
    ({"Authorization": f"Basic {TOKENS['admin']}"}, "Bearer <token>"),
    ({"Authorization": "Bearer "}, "Bearer <token>"),
])
async def test_missing_or_wrong_token_is_401_naming_why(
    client: TestClient[Any, Any], headers: dict[str, str], named: str
) -> None:
    resp = await client.get("/queue", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await body_of(resp)
    assert body["error"] == "unauthorised"
    assert named in body["detail"]


async def test_the_token_is_never_logged_nor_echoed(client: TestClient[Any, Any]) -> None:
    with capture_logs() as logs:
        ok = await client.get("/queue", headers=bearer("supervisor"))
        bad = await client.get("/queue", headers={"Authorization": "Bearer secret-guess-123"})
    assert (ok.status, bad.status) == (200, 401)
    assert "secret-guess-123" not in await bad.text()
    requests = [e for e in logs if e["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"], e["who"]) for e in requests] == [
        ("GET", "/queue", 200, "ani"), ("GET", "/queue", 401, None)]
    assert all(isinstance(e["ms"], float) for e in requests)
    dumped = repr(logs)
    assert TOKENS["supervisor"] not in dumped and "secret-guess-123" not in dumped


@pytest.mark.parametrize("method, path, role, body", [
    ("POST", "/operators/op1/state", "supervisor", {"state": "paused", "reason": "x"}),
    ("POST", f"/calls/{LIVE}/disposition", "supervisor", {"disposition": "prank"}),
    ("POST", f"/calls/{LIVE}/agencies", "supervisor", {"agency": "01"}),
    ("POST", "/blocklist", "operator", {"number": "+6281234567890", "hours": 1, "reason": "x"}),
    ("DELETE", "/blocklist/+6281234567890?reason=x", "operator", None),
    ("POST", "/dispatches/d1/moving", "supervisor", {"call_id": LIVE, "agency": "01"}),
    ("GET", "/queue", "agency", None),
    ("GET", "/calls", "agency", None),
])
async def test_a_role_too_low_is_403_naming_the_role_needed(
    client: TestClient[Any, Any], daemon: FakeDaemon, method: str, path: str, role: str,
    body: dict[str, Any] | None,
) -> None:
    resp = await client.request(method, path, json=body, headers=bearer(role))
    assert resp.status == 403
    data = await body_of(resp)
    assert data["error"] == "forbidden"
    assert "needs role" in data["detail"] and role in data["detail"]
    assert daemon.stasis.commands == [] and daemon.moving == []


def test_roles_are_ordered_supervisor_operator_admin() -> None:
    auth = Authenticator(make_settings().api.tokens)
    admin = auth.principal(f"Bearer {TOKENS['admin']}")
    operator = auth.principal(f"bearer {TOKENS['operator']}")
    supervisor = auth.principal(f"Bearer {TOKENS['supervisor']}")
    agency = auth.principal(f"Bearer {TOKENS['agency']}")
    assert admin.may(Role.OPERATOR) and admin.may(Role.SUPERVISOR)
    assert operator.may(Role.SUPERVISOR) and not operator.may(Role.ADMIN)
    assert not supervisor.may(Role.OPERATOR)
    assert agency.agency == "01" and not agency.may(Role.SUPERVISOR)
    with pytest.raises(AuthError, match="unknown token"):
        auth.principal(f"Bearer {TOKENS['admin']}x")


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("path, status, error, names", [
    ("/calls?limit=501", 422, "bad_query", "limit"),
    ("/calls?limit=0", 422, "bad_query", "limit"),
    ("/calls?limit=ten", 422, "bad_query", "limit"),
    ("/calls?offset=-1", 422, "bad_query", "offset"),
    ("/calls?since=yesterday", 422, "bad_query", "since"),
    ("/calls?disposition=rude", 422, "bad_query", "disposition"),
    ("/calls?limt=5", 422, "bad_query", "limt"),
    ("/calls?limit=5&limit=6", 422, "repeated_parameter", "limit"),
    ("/calls?caller=anonymous", 422, "bad_number", "withheld"),
    ("/calls?caller=%27%3B%20DROP%20TABLE%20calls", 422, "bad_number", "garbage"),
    ("/kpis?since=2025-01-02&until=2025-01-01", 422, "bad_query", "since must be before"),
    ("/referrals?format=xml", 422, "bad_query", "format"),
    ("/queue?x=1", 422, "unknown_parameter", "x"),
    ("/nowhere", 404, "not_found", "/nowhere"),
])
async def test_bad_queries_are_4xx_naming_the_problem(
    client: TestClient[Any, Any], path: str, status: int, error: str, names: str
) -> None:
    resp = await client.get(path, headers=bearer("admin"))
    assert resp.status == status
    data = await body_of(resp)
    assert data["error"] == error
    assert names in json.dumps(data["detail"])


@pytest.mark.parametrize("path, raw, status, error, names", [
    (f"/calls/{LIVE}/disposition", b"{not json", 400, "malformed_json", "json_invalid"),
    (f"/calls/{LIVE}/disposition", b"", 400, "missing_body", "JSON object"),
    (f"/calls/{LIVE}/disposition", b"[]", 422, "bad_body", "model_type"),
    (f"/calls/{LIVE}/disposition", b'{"disposition": "rude"}', 422, "bad_body", "disposition"),
    (f"/calls/{LIVE}/disposition", b'{"disposition": "prank", "category": "13"}', 422,
     "bad_body", "category"),
    (f"/calls/{LIVE}/disposition", b'{"disposition": "prank", "by": "x"}', 422, "bad_body",
     "extra_forbidden"),
    (f"/calls/{LIVE}/agencies", b'{"agency": 1}', 422, "bad_body", "agency"),
    (f"/calls/{LIVE}/agencies", b'{"agency": "1"}', 422, "bad_body", "agency"),
    ("/operators/op1/state", b'{"state": "on_call"}', 422, "bad_body", "state"),
    ("/blocklist", b'{"number": "+6281234567890", "reason": "x"}', 422, "bad_body", "hours"),
    ("/blocklist", b'{"number": "+6281234567890", "hours": -1, "reason": "x"}', 422,
     "bad_body", "hours"),
    ("/blocklist", b'{"number": "+6281234567890", "hours": 1, "reason": ""}', 422,
     "bad_body", "reason"),
    ("/blocklist", b'{"number": "+1 202 555 0100", "hours": 1, "reason": "x"}', 422,
     "bad_number", "not_indonesian"),
    ("/blocklist", b'{"number": "12", "hours": 1, "reason": "x"}', 422,
     "bad_number", "not_indonesian"),
    ("/dispatches/d1/moving", b'{"call_id": "c"}', 422, "bad_body", "agency"),
])
async def test_bad_bodies_are_4xx_naming_the_problem(
    client: TestClient[Any, Any], daemon: FakeDaemon, path: str, raw: bytes, status: int,
    error: str, names: str,
) -> None:
    resp = await client.post(path, data=raw, headers={**bearer("admin"),
                                                      "Content-Type": "application/json"})
    assert resp.status == status
    data = await body_of(resp)
    assert data["error"] == error
    assert names in json.dumps(data["detail"])
    assert daemon.stasis.commands == []


async def test_a_body_over_64_kib_is_413_json(client: TestClient[Any, Any]) -> None:
    raw = json.dumps({"state": "paused", "reason": "x" * 70_000}).encode()
    resp = await client.post("/operators/op1/state", data=raw, headers=bearer("operator"))
    assert resp.status == 413
    assert (await body_of(resp))["error"] == "request_entity_too_large"


async def test_a_wrong_method_is_405_with_allow(client: TestClient[Any, Any]) -> None:
    resp = await client.put("/queue", headers=bearer("admin"))
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert (await body_of(resp))["error"] == "method_not_allowed"


async def test_a_database_that_does_not_answer_is_503_not_500(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get("/calls", headers=bearer("supervisor"))
    assert resp.status == 503
    assert (await body_of(resp))["error"] == "database_unavailable"


# -- live endpoints --------------------------------------------------------------------------


async def test_queue_lists_waiting_callers(client: TestClient[Any, Any]) -> None:
    data = await body_of(await client.get("/queue", headers=bearer("supervisor")))
    assert data["length"] == 1
    assert data["entries"][0]["call_id"] == "1700000000.1"
    assert data["entries"][0]["caller"] == "+6281234567890"


async def test_operators_and_setting_a_state(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    data = await body_of(await client.get("/operators", headers=bearer("supervisor")))
    assert [o["operator"] for o in data["operators"]] == ["op1", "op2"]

    resp = await client.post("/operators/op2/state", headers=bearer("operator"),
                             json={"state": "paused", "reason": "break"})
    assert resp.status == 200
    changed = await body_of(resp)
    assert (changed["operator"], changed["state"], changed["reason"]) == ("op2", "paused", "break")
    assert daemon.desk.ops["op2"].state is OperatorState.PAUSED
    assert daemon.desk.persisted == ["op2"]

    back = await client.post("/operators/op2/state", headers=bearer("operator"),
                             json={"state": "available", "reason": None})
    assert (await body_of(back))["state"] == "available"

    missing = await client.post("/operators/op9/state", headers=bearer("operator"),
                                json={"state": "available"})
    assert missing.status == 404
    assert "op9" in (await body_of(missing))["detail"]


async def test_marking_a_live_call_goes_to_the_call(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    resp = await client.post(f"/calls/{LIVE}/disposition", headers=bearer("operator"),
                             json={"disposition": "prank", "category": "05"})
    assert resp.status == 200
    assert await body_of(resp) == {"call_id": LIVE, "live": True, "result": "ok", "call": None}
    assert daemon.stasis.commands == [(LIVE, "disposition", "prank", "op1"),
                                      (LIVE, "category", "05", "op1")]


async def test_a_live_call_that_does_not_answer_is_503(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    daemon.stasis.answers[CommandKind.DISPOSITION] = CallNotResponding(LIVE, "disposition")
    resp = await client.post(f"/calls/{LIVE}/disposition", headers=bearer("operator"),
                             json={"disposition": "ghost"})
    assert resp.status == 503
    assert (await body_of(resp))["error"] == "call_not_responding"


@pytest.mark.parametrize("answer, status, error, detail", [
    (CommandResult.DIALLING, 202, None, None),
    (CommandResult.ALREADY_ON_CALL, 200, None, None),
    (UnknownAgency("77"), 422, "unknown_agency", "unknown agency 77"),
    (CallNotConnected(LIVE, CallState.QUEUED), 409, "call_not_connected",
     "call is queued, not connected"),
    (CallNotResponding(LIVE, "agency"), 503, "call_not_responding",
     f"call {LIVE!r} did not take the agency command in time"),
])
async def test_bringing_an_agency_onto_a_live_call(
    client: TestClient[Any, Any], daemon: FakeDaemon, answer: CommandResult | CommandError,
    status: int, error: str | None, detail: str | None,
) -> None:
    daemon.stasis.answers[CommandKind.AGENCY] = answer
    resp = await client.post(f"/calls/{LIVE}/agencies", headers=bearer("operator"),
                             json={"agency": "77"})
    assert resp.status == status
    data = await body_of(resp)
    if error is None:
        assert data == {"call_id": LIVE, "agency": "77", "result": str(answer)}
    else:
        assert data == {"error": error, "detail": detail}
    assert daemon.stasis.commands == [(LIVE, "agency", "77", "op1")]


async def test_a_category_the_call_refuses_is_422_after_the_disposition(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    daemon.stasis.answers[CommandKind.CATEGORY] = UnknownCategory("05")
    resp = await client.post(f"/calls/{LIVE}/disposition", headers=bearer("operator"),
                             json={"disposition": "ghost", "category": "05"})
    assert resp.status == 422
    assert await body_of(resp) == {"error": "unknown_category",
                                   "detail": "unknown category 05"}
    assert [kind for _, kind, _, _ in daemon.stasis.commands] == ["disposition", "category"]


async def test_a_call_that_ends_between_disposition_and_category_is_409(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    daemon.stasis.answers[CommandKind.CATEGORY] = CallNotLive(LIVE)
    resp = await client.post(f"/calls/{LIVE}/disposition", headers=bearer("operator"),
                             json={"disposition": "ghost", "category": "05"})
    assert resp.status == 409
    assert await body_of(resp) == {"error": "call_not_live",
                                   "detail": f"call {LIVE!r} is not live"}


def test_every_refusal_of_a_live_call_has_its_status() -> None:
    refusals = {c for c in vars(call_errors).values()
                if isinstance(c, type) and issubclass(c, CommandError) and c is not CommandError}
    assert refusals == set(CALL_FAILURES)
    assert len({error for _, error in CALL_FAILURES.values()}) == len(CALL_FAILURES)


async def test_an_agency_for_a_call_not_live_is_409(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    resp = await client.post("/calls/1600000000.1/agencies", headers=bearer("operator"),
                             json={"agency": "02"})
    assert resp.status == 409
    assert (await body_of(resp))["error"] == "call_not_live"
    assert daemon.stasis.commands == []


@pytest.fixture
def dispatches(daemon: FakeDaemon, dead_engine: AsyncEngine) -> KnownDispatches:
    """c1 has dispatches to agency 02 and to agency 01."""
    repo = KnownDispatches(dead_engine, {"c1-02-abc": ("c1", "02"), "c1-01-def": ("c1", "01")})
    daemon.repository = repo
    return repo


@pytest.mark.parametrize("role, dispatch, agency, status, by", [
    ("operator", "c1-02-abc", "02", 202, "op1"),
    ("agency", "c1-01-def", "01", 202, "damkar"),
])
async def test_team_moving_on_the_agencys_own_dispatch(
    client: TestClient[Any, Any], daemon: FakeDaemon, dispatches: KnownDispatches, role: str,
    dispatch: str, agency: str, status: int, by: str,
) -> None:
    resp = await client.post(f"/dispatches/{dispatch}/moving", headers=bearer(role),
                             json={"call_id": "c1", "agency": agency})
    assert resp.status == status
    assert await body_of(resp) == {"dispatch_id": dispatch, "call_id": "c1",
                                   "agency": agency, "accepted": True}
    assert daemon.moving == [(agency, "c1", dispatch, by)]


@pytest.mark.parametrize("role, dispatch, body, status, error, named", [
    # agency 01's token speaking for agency 02
    ("agency", "c1-02-abc", {"call_id": "c1", "agency": "02"}, 403, "forbidden",
     "speaks for agency 01"),
    # agency 01's token on agency 02's dispatch
    ("agency", "c1-02-abc", {"call_id": "c1", "agency": "01"}, 404, "dispatch_not_found",
     "agency 01 has no dispatch 'c1-02-abc'"),
    # a dispatch nobody has: no phantom row
    ("operator", "c9-02-zzz", {"call_id": "c9", "agency": "02"}, 404, "dispatch_not_found",
     "c9-02-zzz"),
    # the agency's own dispatch, named with another call
    ("agency", "c1-01-def", {"call_id": "c2", "agency": "01"}, 409,
     "dispatch_of_another_call", "is of call 'c1'"),
])
async def test_team_moving_on_a_dispatch_not_the_agencys_is_refused(
    client: TestClient[Any, Any], daemon: FakeDaemon, dispatches: KnownDispatches, role: str,
    dispatch: str, body: dict[str, str], status: int, error: str, named: str,
) -> None:
    resp = await client.post(f"/dispatches/{dispatch}/moving", headers=bearer(role), json=body)
    assert resp.status == status
    data = await body_of(resp)
    assert data["error"] == error
    assert named in data["detail"]
    assert daemon.moving == []


@pytest.mark.parametrize("path, body, field", [
    ("/dispatches/c1-02-abc/moving", {"call_id": "x\u0000y", "agency": "02"}, "call_id"),
    ("/dispatches/c1-02-abc/moving", {"call_id": "7" * 65_000, "agency": "02"}, "call_id"),
    ("/dispatches/c1-02-abc/moving", {"call_id": "a/b/#", "agency": "02"}, "call_id"),
    ("/dispatches/c1-02-abc/moving", {"call_id": "c1", "agency": "0\u0000"}, "agency"),
    ("/dispatches/c1%00x/moving", {"call_id": "c1", "agency": "02"}, "dispatch_id"),
    ("/dispatches/a+b/moving", {"call_id": "c1", "agency": "02"}, "dispatch_id"),
    (f"/dispatches/{'d' * 129}/moving", {"call_id": "c1", "agency": "02"}, "dispatch_id"),
    ("/calls/c1%0A/disposition", {"disposition": "prank"}, "call_id"),
    (f"/calls/{'1' * 97}/agencies", {"agency": "01"}, "call_id"),
    ("/operators/op1/state", {"state": "paused", "reason": "tea\u0000"}, "reason"),
    ("/operators/op%2F1/state", {"state": "paused"}, "name"),
    ("/blocklist", {"number": "081234567890", "hours": 1, "reason": "\u0007"}, "reason"),
])
async def test_an_unchecked_id_or_text_is_422_naming_the_field(
    client: TestClient[Any, Any], daemon: FakeDaemon, dispatches: KnownDispatches, path: str,
    body: dict[str, Any], field: str,
) -> None:
    raw = json.dumps(body).encode()  # control characters as JSON escapes: \u0000
    resp = await client.post(path, data=raw, headers={**bearer("admin"),
                                                      "Content-Type": "application/json"})
    assert resp.status == 422, await resp.text()
    data = await body_of(resp)
    assert data["error"] in ("bad_body", "bad_path_parameter")
    assert [field] in [e["loc"][-1:] for e in data["detail"]]
    assert daemon.moving == [] and daemon.stasis.commands == []
    assert "u0000" not in json.dumps(data) and len(json.dumps(data)) < 2_000


async def test_an_unchecked_operator_in_a_query_is_422(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/calls?operator=op1%00", headers=bearer("supervisor"))
    assert resp.status == 422
    data = await body_of(resp)
    assert data["error"] == "bad_query" and data["detail"][0]["loc"] == ["operator"]


# -- readiness and metrics -------------------------------------------------------------------


async def test_ready_names_what_is_down(client: TestClient[Any, Any], daemon: FakeDaemon) -> None:
    daemon.events.connected.set()
    daemon.writer.backlog = 7
    resp = await client.get("/ready", headers=bearer("supervisor"))
    assert resp.status == 503
    assert await body_of(resp) == {"ready": False, "role": "active", "ari": True,
                                   "database": False,
                                   "mqtt": True, "journal_backlog": 7, "overflow": False,
                                   "overflow_since": None, "journal": "ok",
                                   "journal_problems": []}


async def test_ready_takes_mqtt_disabled_as_fine(dead_engine: AsyncEngine) -> None:
    d = FakeDaemon(settings=make_settings(mqtt=False), engine=dead_engine,
                   repository=Repository(dead_engine), policy=None, notifier=NullNotifier())
    async with TestClient(TestServer(Api(d).app)) as c:
        data = await body_of(await c.get("/ready", headers=bearer("supervisor")))
    assert data["mqtt"] == "disabled" and data["ari"] is False


async def test_metrics_need_a_token_unless_public(
    client: TestClient[Any, Any], daemon: FakeDaemon, dead_engine: AsyncEngine
) -> None:
    assert (await client.get("/metrics")).status == 401
    resp = await client.get("/metrics", headers=bearer("supervisor"))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(await resp.text())}
    assert "siaga112_calls" in names

    public = FakeDaemon(settings=make_settings(metrics_public=True), engine=dead_engine,
                        repository=None, policy=None)
    async with TestClient(TestServer(Api(public).app)) as c:
        assert (await c.get("/metrics")).status == 200


# -- OpenAPI ---------------------------------------------------------------------------------


async def test_openapi_lists_every_route_and_every_ref_resolves(
    client: TestClient[Any, Any], daemon: FakeDaemon
) -> None:
    resp = await client.get("/openapi.json", headers=bearer("supervisor"))
    assert resp.status == 200
    doc = json.loads(await resp.text())
    assert doc["openapi"].startswith("3.")
    served = {(r.method, r.path) for r in Api(daemon).routes}
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert described == served
    assert ("GET", "/calls/{call_id}") in described and ("GET", "/kpis") in described

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[-1] in schemas, ref
    calls = doc["paths"]["/calls"]["get"]
    assert {p["name"] for p in calls["parameters"]} == {
        "since", "until", "caller", "disposition", "operator", "limit", "offset"}
    assert doc["paths"]["/health"]["get"]["security"] == []
    block = doc["paths"]["/blocklist"]["post"]
    assert block["x-role"] == "admin" and "requestBody" in block
    assert set(block["responses"]) == {"201", "400", "401", "403", "422", "503"}


def test_openapi_is_plain_json() -> None:
    settings = make_settings()

    class Nothing:
        pass

    d = FakeDaemon(settings=settings, engine=Nothing(), repository=None,
                   policy=None)
    assert json.loads(json.dumps(openapi(Api(d).routes)))["info"]["title"]


# -- running ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_start_serves_on_the_port_and_stop_closes_it(daemon: FakeDaemon) -> None:
    daemon.settings.api.port = _free_port()
    api = Api(daemon)
    await api.start()
    try:
        assert api.port == daemon.settings.api.port
        with socket.create_connection(("127.0.0.1", api.port), timeout=1):
            pass
    finally:
        await api.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", api.port), timeout=1):
        pass


async def test_a_port_in_use_is_logged_and_the_daemon_goes_on(daemon: FakeDaemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon.settings.api.port = taken.getsockname()[1]
        api = Api(daemon)
        with capture_logs() as logs:
            await api.start()
        await api.stop()
    assert api.port is None
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["api_not_started"]
