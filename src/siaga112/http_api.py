"""HTTP operations API: the centre's screens and scripts read the queue, the operators, the
calls, the blocklist, the referrals and the KPIs here, and act on calls, operators and the
blocklist. An aiohttp application on the daemon's event loop (settings.api: host, port, tokens).

Every route is one `Route` in `Api.routes`: its role, its query and body models and its answer
model. The same table validates requests, checks roles and builds /openapi.json. Bad input is
a 4xx with ``{"error": ..., "detail": ...}``; a database that does not answer is a 503.
The API is no part of the call path: a port it cannot bind is logged and the daemon goes on.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112 import ids
from siaga112.callerid import normalise
from siaga112.http_auth import Authenticator, AuthError, Principal, Role
from siaga112.http_schemas import (
    AgencyAnswer,
    AgencyBody,
    BlockAnswer,
    BlockBody,
    BlocklistAnswer,
    BlocklistQuery,
    CallAnswer,
    CallList,
    CallsQuery,
    DispositionAnswer,
    DispositionBody,
    ErrorAnswer,
    HealthAnswer,
    KpisQuery,
    MovingAnswer,
    MovingBody,
    OperatorsAnswer,
    OperatorStateBody,
    ReadyAnswer,
    ReferralsAnswer,
    ReferralsQuery,
    UnblockAnswer,
    UnblockQuery,
)
from siaga112.model import BlockEntry, OperatorSnapshot, OperatorState, QueueSnapshot
from siaga112.records.schemas import (
    BlockRecord,
    CallDetail,
    CallRecord,
    DispatchRow,
    Kpis,
    Referral,
)
from siaga112.settings import Settings

log = structlog.get_logger(__name__)

API_VERSION = "1"
MAX_BODY = 64 * 1024
# Path parameters that are ids, and their longest; others (a phone number) are printable text.
PATH_IDS = {"call_id": ids.CALL_ID_MAX, "dispatch_id": ids.ID_MAX, "name": 64}
MAX_PATH_TEXT = 64
READY_DB_TIMEOUT = 1.0
NO_LIVE_CALL = "no live call with that id"  # Stasis.command's answer for a call it lacks
REFERRAL_CSV_COLUMNS = ("number", "count", "first_at", "last_at", "referred_at", "exported_at")

M = TypeVar("M", bound=BaseModel)
WHO = web.RequestKey("who", Principal)  # the request's principal, once authenticated


# -- what the API needs from the daemon (app.Daemon; a fake in tests) -------------------------


class StasisLike(Protocol):
    @property
    def sessions(self) -> Mapping[str, object]: ...
    async def command(self, call_id: str, kind: str, arg: str, by: str) -> str: ...


class QueueLike(Protocol):
    def snapshot(self) -> QueueSnapshot: ...


class DeskLike(Protocol):
    def __contains__(self, name: str) -> bool: ...
    def snapshot(self) -> list[OperatorSnapshot]: ...
    def choose(self, name: str, state: OperatorState, reason: str | None,
               persist: bool) -> None: ...


class RepositoryLike(Protocol):
    async def list_calls(self, since: datetime | None = None, until: datetime | None = None,
                         caller: str | None = None, disposition: str | None = None,
                         operator: str | None = None, limit: int = 100,
                         offset: int = 0) -> list[CallRecord]: ...
    async def get_call(self, call_id: str) -> CallDetail | None: ...
    async def agency_dispatch(self, dispatch_id: str, agency: str) -> DispatchRow | None: ...
    async def mark_call(self, call_id: str, by: str, disposition: str | None = None,
                        category: str | None = None) -> CallRecord: ...
    async def list_blocks(self, include_expired: bool = False) -> list[BlockRecord]: ...
    async def referrals(self, only_new: bool = False) -> list[Referral]: ...
    async def kpis(self, since: datetime, until: datetime) -> Kpis: ...


class PolicyLike(Protocol):
    async def block(self, number: str, hours: float | None, reason: str,
                    by: str) -> BlockEntry: ...
    async def unblock(self, number: str, reason: str, by: str) -> bool: ...


class EventsLike(Protocol):
    @property
    def connected(self) -> asyncio.Event: ...


class MetricsLike(Protocol):
    def render(self) -> bytes: ...


class WriterLike(Protocol):
    @property
    def backlog(self) -> int: ...
    @property
    def problems(self) -> list[str]: ...


class OverflowLike(Protocol):
    @property
    def active(self) -> bool: ...
    @property
    def active_since(self) -> datetime | None: ...


class DaemonLike(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def stasis(self) -> StasisLike: ...
    @property
    def queue(self) -> QueueLike: ...
    @property
    def desk(self) -> DeskLike: ...
    @property
    def repository(self) -> RepositoryLike: ...
    @property
    def policy(self) -> PolicyLike: ...
    @property
    def events(self) -> EventsLike: ...
    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def notifier(self) -> object: ...  # MqttNotifier (.connected) or NullNotifier
    @property
    def metrics(self) -> MetricsLike: ...
    @property
    def writer(self) -> WriterLike: ...
    @property
    def overflow(self) -> OverflowLike: ...
    def team_moving(self, agency: str, call_id: str, dispatch_id: str, by: str) -> None: ...


# -- routes, requests, errors -----------------------------------------------------------------


class ApiError(Exception):
    """Answered as ``{"error": error, "detail": detail}`` with `status`."""

    def __init__(self, status: int, error: str, detail: object = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


@dataclass
class Ctx:
    """One validated request."""

    request: web.Request
    who: Principal | None
    query: BaseModel | None
    body: BaseModel | None

    def q(self, model: type[M]) -> M:
        assert isinstance(self.query, model)
        return self.query

    def b(self, model: type[M]) -> M:
        assert isinstance(self.body, model)
        return self.body

    def path(self, name: str) -> str:
        """A path parameter, checked by its name (PATH_IDS): a 422 naming it otherwise."""
        value = self.request.match_info[name]
        wrong = _path_problem(name, value)
        if wrong is not None:
            raise ApiError(422, "bad_path_parameter",
                           [{"type": "bad_id", "loc": ["path", name], "msg": f"{name} {wrong}"}])
        return value

    @property
    def by(self) -> str:
        return self.who.name if self.who is not None else "anonymous"


Handler = Callable[[Ctx], Awaitable[BaseModel | web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    role: Role | None  # None: no token needed
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    status: int = 200
    media: str = "application/json"
    agency_ok: bool = False  # an agency token may call it
    errors: tuple[int, ...] = field(default=())


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                         content_type="application/json")


def _error(status: int, error: str, detail: object = None,
           headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=ErrorAnswer(error=error, detail=detail).model_dump_json(),
                        status=status, content_type="application/json", headers=headers)


def _errors_of(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors, JSON-safe, without the input echoed back (it may be long)."""
    out: list[dict[str, Any]] = json.loads(exc.json(include_url=False, include_input=False))
    for e in out:
        e.pop("ctx", None)
    return out


def _path_problem(name: str, value: str) -> str | None:
    if name in PATH_IDS:
        return ids.problem(value, PATH_IDS[name])
    if not value or len(value) > MAX_PATH_TEXT or not value.isprintable():
        return f"must be 1 to {MAX_PATH_TEXT} printable characters"
    return None


def _snake(reason: str) -> str:
    return re.sub(r"\W+", "_", reason.strip().lower()).strip("_") or "error"


# -- the API ----------------------------------------------------------------------------------


class Api:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon
        self._settings = daemon.settings.api
        self._auth = Authenticator(self._settings.tokens)
        self._metrics_public = self._settings.metrics_public
        self.routes = self._routes()
        self.app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY)
        for r in self.routes:
            self.app.router.add_route(r.method, r.path, self._endpoint(r))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # bound port once started

    # -- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self._settings
        if not len(self._auth):
            log.warning("api_no_tokens", hint="every route but /health answers 401")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, s.host, s.port)
        try:
            await site.start()
        except OSError as exc:
            # Fail open: the API is for people and scripts; calls flow without it.
            log.error("api_not_started", host=s.host, port=s.port, error=str(exc))
            await runner.cleanup()
            return
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else s.port
        log.info("api_started", host=s.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.info("api_stopped")

    # -- the route table ----------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        sup, op, admin = Role.SUPERVISOR, Role.OPERATOR, Role.ADMIN
        return [
            Route("GET", "/health", self._health, "Liveness: 200 while the event loop runs.",
                  None, answer=HealthAnswer),
            Route("GET", "/ready", self._ready,
                  "Readiness: ARI connected, database answers, MQTT connected or disabled.",
                  sup, answer=ReadyAnswer, errors=(503,)),
            Route("GET", "/queue", self._queue, "Callers waiting now, in the order served.",
                  sup, answer=QueueSnapshot),
            Route("GET", "/operators", self._operators, "Every operator's live state.",
                  sup, answer=OperatorsAnswer),
            Route("POST", "/operators/{name}/state", self._operator_state,
                  "Set an operator available, paused or logged out (kept in the PBX).",
                  op, body=OperatorStateBody, answer=OperatorSnapshot, errors=(404,)),
            Route("GET", "/calls", self._calls, "Recorded calls, newest first.",
                  sup, query=CallsQuery, answer=CallList),
            Route("GET", "/calls/{call_id}", self._call,
                  "One call with its events and dispatches.",
                  sup, answer=CallAnswer, errors=(404,)),
            Route("POST", "/calls/{call_id}/disposition", self._disposition,
                  "Mark a call prank, ghost or genuine (and its category): a live call now, "
                  "an ended one on its record.",
                  op, body=DispositionBody, answer=DispositionAnswer, errors=(404, 503)),
            Route("POST", "/calls/{call_id}/agencies", self._agency,
                  "Bring an agency onto a live, connected call.",
                  op, body=AgencyBody, answer=AgencyAnswer, status=202, errors=(409, 503)),
            Route("GET", "/blocklist", self._blocklist, "Blocked numbers.",
                  sup, query=BlocklistQuery, answer=BlocklistAnswer),
            Route("POST", "/blocklist", self._block,
                  "Block a number for some hours, or until unblocked (hours null).",
                  admin, body=BlockBody, answer=BlockAnswer, status=201),
            Route("DELETE", "/blocklist/{number}", self._unblock, "End a number's block.",
                  admin, query=UnblockQuery, answer=UnblockAnswer, errors=(404,)),
            Route("GET", "/referrals", self._referrals,
                  "Numbers referred to the ministry, as JSON or as CSV.",
                  sup, query=ReferralsQuery, answer=ReferralsAnswer),
            Route("POST", "/dispatches/{dispatch_id}/moving", self._moving,
                  "An agency reports its team is on the way (its own dispatches only).",
                  op, body=MovingBody, answer=MovingAnswer, status=202, agency_ok=True,
                  errors=(404, 409, 503)),
            Route("GET", "/kpis", self._kpis, "Service KPIs over [since, until).",
                  sup, query=KpisQuery, answer=Kpis),
            Route("GET", "/metrics", self._metrics, "Prometheus metrics (text format).",
                  None if self._metrics_public else sup, media="text/plain"),
            Route("GET", "/openapi.json", self._openapi, "This API as an OpenAPI document.",
                  sup),
        ]

    # -- request handling ---------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _error(exc.status, exc.error, exc.detail, exc.headers)
        except web.HTTPException as exc:  # no such route, wrong method, body too large
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response = _error(exc.status, _snake(exc.reason), f"{request.method} {request.path}",
                              headers)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("api_database_unavailable", path=request.path, error=str(exc))
            response = _error(503, "database_unavailable", "the records database did not answer")
        except Exception:
            log.exception("api_handler_failed", method=request.method, path=request.path)
            response = _error(500, "internal_error", "see the daemon's log")
        who = request.get(WHO)
        level = log.debug if request.path == "/health" else log.info
        level("http_request", method=request.method, path=request.path,
              status=response.status, ms=round((time.perf_counter() - started) * 1000, 1),
              who=who.name if who else None)
        return response

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            who = self._authorise(request, route) if route.role is not None else None
            query = self._parse_query(request, route.query)
            body = await self._parse_body(request, route.body)
            answer = await route.handler(Ctx(request, who, query, body))
            if isinstance(answer, web.StreamResponse):
                return answer
            return _json(answer, route.status)

        return endpoint

    def _authorise(self, request: web.Request, route: Route) -> Principal:
        assert route.role is not None
        try:
            who = self._auth.principal(request.headers.get("Authorization"))
        except AuthError as exc:
            raise ApiError(401, "unauthorised", str(exc),
                           {"WWW-Authenticate": 'Bearer realm="siaga112"'}) from None
        request[WHO] = who
        allowed = route.agency_ok if who.role is Role.AGENCY else who.may(route.role)
        if not allowed:
            raise ApiError(403, "forbidden",
                           f"{route.method} {route.path} needs role {route.role.value} or above;"
                           f" token {who.name!r} has role {who.role.value}")
        return who

    @staticmethod
    def _parse_query(request: web.Request, model: type[BaseModel] | None) -> BaseModel | None:
        keys = [k for k, _ in request.query.items()]
        if model is None:
            if keys:
                raise ApiError(422, "unknown_parameter",
                               f"{request.path} takes no query parameters, got {sorted(keys)}")
            return None
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ApiError(422, "repeated_parameter", f"give each parameter once: {repeated}")
        try:
            return model.model_validate(dict(request.query))
        except ValidationError as exc:
            raise ApiError(422, "bad_query", _errors_of(exc)) from None

    @staticmethod
    async def _parse_body(request: web.Request, model: type[BaseModel] | None) -> BaseModel | None:
        if model is None:
            return None
        raw = await request.read()
        if not raw.strip():
            raise ApiError(400, "missing_body", f"{request.method} {request.path} needs a JSON "
                           "object body")
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            errors = _errors_of(exc)
            if any(e.get("type") == "json_invalid" for e in errors):
                raise ApiError(400, "malformed_json", errors) from None
            raise ApiError(422, "bad_body", errors) from None

    # -- health -------------------------------------------------------------------------------

    async def _health(self, ctx: Ctx) -> BaseModel:
        return HealthAnswer()

    async def _ready(self, ctx: Ctx) -> web.StreamResponse:
        d = self._d
        ari = d.events.connected.is_set()
        database = await self._database_ok()
        mqtt = self._mqtt_state()
        problems = list(d.writer.problems)
        ready = ari and database and mqtt is not False and not problems
        answer = ReadyAnswer(ready=ready, ari=ari, database=database, mqtt=mqtt,
                             journal_backlog=int(d.writer.backlog),
                             journal="degraded" if problems else "ok", journal_problems=problems,
                             overflow=d.overflow.active, overflow_since=d.overflow.active_since)
        return _json(answer, 200 if ready else 503)

    async def _database_ok(self) -> bool:
        try:
            async with asyncio.timeout(READY_DB_TIMEOUT):
                async with self._d.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready", never a 500
            log.info("ready_database_failed", error=repr(exc))
            return False
        return True

    def _mqtt_state(self) -> bool | Literal["disabled"]:
        connected = getattr(self._d.notifier, "connected", None)
        if not self._d.settings.mqtt.enabled or connected is None:
            return "disabled"
        return bool(connected)

    # -- queue and operators ------------------------------------------------------------------

    async def _queue(self, ctx: Ctx) -> BaseModel:
        return self._d.queue.snapshot()

    async def _operators(self, ctx: Ctx) -> BaseModel:
        return OperatorsAnswer(operators=self._d.desk.snapshot())

    async def _operator_state(self, ctx: Ctx) -> BaseModel:
        name = ctx.path("name")
        body = ctx.b(OperatorStateBody)
        desk = self._d.desk
        if name not in desk:
            raise ApiError(404, "operator_not_found", f"no operator named {name!r}")
        desk.choose(name, OperatorState(body.state.value), body.reason or None, persist=True)
        log.info("operator_state_set", operator=name, state=body.state.value, by=ctx.by)
        return next(o for o in desk.snapshot() if o.operator == name)

    # -- calls --------------------------------------------------------------------------------

    async def _calls(self, ctx: Ctx) -> BaseModel:
        q = ctx.q(CallsQuery)
        caller = self._e164(q.caller, "caller") if q.caller is not None else None
        calls = await self._d.repository.list_calls(
            since=q.since, until=q.until, caller=caller,
            disposition=q.disposition.value if q.disposition else None,
            operator=q.operator, limit=q.limit, offset=q.offset,
        )
        return CallList(calls=calls, limit=q.limit, offset=q.offset)

    async def _call(self, ctx: Ctx) -> BaseModel:
        call_id = ctx.path("call_id")
        live = call_id in self._d.stasis.sessions
        detail = await self._d.repository.get_call(call_id)
        if detail is None and not live:
            raise ApiError(404, "call_not_found", f"no call with call_id {call_id!r}")
        return CallAnswer(
            call_id=call_id, live=live,
            call=detail.call if detail else None,
            events=detail.events if detail else [],
            dispatches=detail.dispatches if detail else [],
        )

    async def _disposition(self, ctx: Ctx) -> BaseModel:
        call_id = ctx.path("call_id")
        body = ctx.b(DispositionBody)
        if call_id in self._d.stasis.sessions:
            result = await self._command(call_id, "disposition", body.disposition.value, ctx.by)
            if result != NO_LIVE_CALL:
                if body.category is not None and result == "ok":
                    result = await self._command(call_id, "category", body.category, ctx.by)
                log.info("call_marked", call_id=call_id, live=True, by=ctx.by, result=result)
                return DispositionAnswer(call_id=call_id, live=True, result=result, call=None)
        try:
            record = await self._d.repository.mark_call(
                call_id, ctx.by, disposition=body.disposition.value, category=body.category)
        except ValueError as exc:
            raise ApiError(404, "call_not_found", str(exc)) from None
        log.info("call_marked", call_id=call_id, live=False, by=ctx.by)
        return DispositionAnswer(call_id=call_id, live=False, result="ok", call=record)

    async def _agency(self, ctx: Ctx) -> web.StreamResponse:
        call_id = ctx.path("call_id")
        code = ctx.b(AgencyBody).agency
        if call_id not in self._d.stasis.sessions:
            raise ApiError(409, "call_not_live", f"call {call_id!r} is not live")
        result = await self._command(call_id, "agency", code, ctx.by)
        log.info("agency_requested_by_api", call_id=call_id, agency=code, by=ctx.by,
                 result=result)
        if result.startswith("unknown agency"):
            raise ApiError(422, "unknown_agency", result)
        if result not in ("dialling", "already on the call"):
            raise ApiError(409, "call_not_connected", result)
        answer = AgencyAnswer(call_id=call_id, agency=code, result=result)
        return _json(answer, 202 if result == "dialling" else 200)

    async def _command(self, call_id: str, kind: str, arg: str, by: str) -> str:
        try:
            return await self._d.stasis.command(call_id, kind, arg, by)
        except TimeoutError:
            raise ApiError(503, "call_not_responding",
                           f"call {call_id!r} did not take the {kind} command in time") from None

    # -- blocklist ----------------------------------------------------------------------------

    async def _blocklist(self, ctx: Ctx) -> BaseModel:
        q = ctx.q(BlocklistQuery)
        return BlocklistAnswer(blocks=await self._d.repository.list_blocks(q.include_expired))

    async def _block(self, ctx: Ctx) -> BaseModel:
        body = ctx.b(BlockBody)
        number = self._e164(body.number, "number")
        try:
            entry = await self._d.policy.block(number, body.hours, body.reason, ctx.by)
        except ValueError as exc:
            raise ApiError(422, "bad_block", str(exc)) from None
        return BlockAnswer.model_validate(entry.model_dump())

    async def _unblock(self, ctx: Ctx) -> BaseModel:
        number = self._e164(ctx.path("number"), "number")
        ended = await self._d.policy.unblock(number, ctx.q(UnblockQuery).reason, ctx.by)
        if not ended:
            raise ApiError(404, "not_blocked", f"{number} has no active block")
        return UnblockAnswer(number=number, unblocked=True)

    @staticmethod
    def _e164(raw: str, name: str) -> str:
        cid = normalise(raw)
        if cid.e164 is None:
            raise ApiError(422, "bad_number",
                           f"{name} {cid.raw!r} is not a usable Indonesian number: "
                           f"{cid.problem.value}")
        return cid.e164

    # -- referrals, KPIs, dispatches ----------------------------------------------------------

    async def _referrals(self, ctx: Ctx) -> BaseModel | web.StreamResponse:
        q = ctx.q(ReferralsQuery)
        referrals = await self._d.repository.referrals(only_new=q.only_new)
        if q.format == "json":
            return ReferralsAnswer(referrals=referrals)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(REFERRAL_CSV_COLUMNS)
        for r in referrals:
            row = r.model_dump(mode="json")
            writer.writerow(["" if row[c] is None else row[c] for c in REFERRAL_CSV_COLUMNS])
        day = datetime.now(UTC).strftime("%Y%m%d")
        return web.Response(
            text=out.getvalue(), content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="referrals-{day}.csv"'},
        )

    async def _kpis(self, ctx: Ctx) -> BaseModel:
        q = ctx.q(KpisQuery)
        until = q.until or datetime.now(UTC)
        since = q.since or until - timedelta(hours=24)
        if since >= until:
            raise ApiError(422, "bad_query", f"since ({since.isoformat()}) must be before until "
                           f"({until.isoformat()})")
        return await self._d.repository.kpis(since, until)

    async def _moving(self, ctx: Ctx) -> BaseModel:
        dispatch_id = ctx.path("dispatch_id")
        body = ctx.b(MovingBody)
        who = ctx.who
        if who is not None and who.role is Role.AGENCY and who.agency != body.agency:
            raise ApiError(403, "forbidden",
                           f"token {who.name!r} speaks for agency {who.agency}, not {body.agency}")
        # Only a dispatch that exists and is this agency's: no moving_at set on another
        # agency's dispatch (silencing its overdue alert), no phantom rows.
        found = await self._d.repository.agency_dispatch(dispatch_id, body.agency)
        if found is None:
            raise ApiError(404, "dispatch_not_found",
                           f"agency {body.agency} has no dispatch {dispatch_id!r}")
        if found.call_id != body.call_id:
            raise ApiError(409, "dispatch_of_another_call",
                           f"dispatch {dispatch_id!r} is of call {found.call_id!r}, "
                           f"not {body.call_id!r}")
        self._d.team_moving(body.agency, found.call_id, dispatch_id, ctx.by)
        log.info("team_moving_by_api", dispatch_id=dispatch_id, call_id=body.call_id,
                 agency=body.agency, by=ctx.by)
        return MovingAnswer(dispatch_id=dispatch_id, call_id=body.call_id, agency=body.agency)

    # -- metrics and the description ----------------------------------------------------------

    async def _metrics(self, ctx: Ctx) -> web.StreamResponse:
        from siaga112.metrics import CONTENT_TYPE

        return web.Response(body=self._d.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _openapi(self, ctx: Ctx) -> web.StreamResponse:
        return web.json_response(openapi(self.routes))


# -- OpenAPI ----------------------------------------------------------------------------------

_ERROR_TEXT = {
    400: "malformed request (no body, not JSON)",
    401: "no token, or an unknown one",
    403: "the token's role is too low",
    404: "no such thing",
    409: "the call is not in a state for this, or ids that do not belong together",
    422: "a parameter or field is invalid (detail names it)",
    503: "a dependency did not answer",
}


def openapi(routes: list[Route]) -> dict[str, Any]:
    """An OpenAPI 3.1 document of `routes`, its schemas built from their pydantic models."""
    inputs = {m for r in routes for m in (r.query, r.body) if m is not None}
    outputs = {r.answer for r in routes if r.answer is not None} | {ErrorAnswer}
    keys: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)),
        *((m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)),
    ]
    refs, top = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: Literal["validation", "serialization"]) -> Any:
        return refs[(model, mode)]

    def schema_of(model: type[BaseModel]) -> dict[str, Any]:
        name = str(ref(model, "validation")["$ref"]).rsplit("/", 1)[-1]
        found: dict[str, Any] = schemas[name]
        return found

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", r.path)
        ]
        if r.query is not None:
            s = schema_of(r.query)
            required = set(s.get("required", []))
            for name, prop in s.get("properties", {}).items():
                param = {"name": name, "in": "query", "required": name in required,
                         "schema": prop}
                if "description" in prop:
                    param["description"] = prop["description"]
                params.append(param)
        if r.answer is not None:
            content = {r.media: {"schema": ref(r.answer, "serialization")}}
        else:
            content = {r.media: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {str(r.status): {"description": "success",
                                                     "content": content}}
        if r.path == "/referrals":
            responses[str(r.status)]["content"]["text/csv"] = {"schema": {"type": "string"}}
        codes = set(r.errors)
        if r.query is not None or r.body is not None or params:
            codes |= {422}
        if r.body is not None:
            codes |= {400}
        if r.role is not None:
            codes |= {401, 403}
        for code in sorted(codes):
            responses[str(code)] = {
                "description": _ERROR_TEXT.get(code, "error"),
                "content": {"application/json": {"schema": ref(ErrorAnswer, "serialization")}},
            }
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__.strip("_"),
            "parameters": params,
            "responses": responses,
            "security": [{"bearer": []}] if r.role is not None else [],
            "x-role": r.role.value if r.role is not None else None,
        }
        if r.agency_ok:
            op["x-agency-token"] = True
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(r.body, "validation")}},
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Siaga112 operations API", "version": API_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
