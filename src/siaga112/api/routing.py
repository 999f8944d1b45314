"""One route's way from the request to its handler: the `Route` table entry (role, query, body,
answer), the token and role check, the parsing of query, body and path parameters, and the
`Ctx` a handler gets. Anything wrong is raised as an api/errors.py class."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from siaga112 import ids
from siaga112.api import errors
from siaga112.api.auth import Authenticator, AuthError, Principal, Role
from siaga112.callerid import normalise

# Path parameters that are ids, and their longest; others (a phone number) are printable text.
PATH_IDS = {"call_id": ids.CALL_ID_MAX, "dispatch_id": ids.ID_MAX, "name": 64}
MAX_PATH_TEXT = 64

# Methods that change nothing: any other (POST, PUT, PATCH, DELETE) is refused on a standby.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

M = TypeVar("M", bound=BaseModel)
WHO = web.RequestKey("who", Principal)  # the request's principal, once authenticated


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
            raise errors.BadPathParameter(name, wrong)
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
    also_csv: bool = False  # may answer text/csv instead (the OpenAPI document says so)
    errors: tuple[int, ...] = field(default=())


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                        content_type="application/json")


def endpoint(
    route: Route, auth: Authenticator, check_lead: Callable[[], None],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of `route`: check the token, parse, run, dump the answer. A route
    that changes state also calls `check_lead` (api/standby.py: raises on a standby) after the
    token check and again once the request is read, just before the handler runs."""
    changes = route.method not in SAFE_METHODS

    async def handle(request: web.Request) -> web.StreamResponse:
        who = _authorise(auth, request, route) if route.role is not None else None
        if changes:
            check_lead()
        query = _parse_query(request, route.query)
        body = await _parse_body(request, route.body)
        if changes:
            check_lead()  # the lead may have gone while the body arrived
        answer = await route.handler(Ctx(request, who, query, body))
        if isinstance(answer, web.StreamResponse):
            return answer
        return json_response(answer, route.status)

    return handle


def e164(raw: str, name: str) -> str:
    """A phone number in any form as E.164, or a 422 naming why it is not usable."""
    cid = normalise(raw)
    if cid.e164 is None:
        raise errors.BadNumber(f"{name} {cid.raw!r} is not a usable Indonesian number: "
                               f"{cid.problem.value}")
    return cid.e164


def _authorise(auth: Authenticator, request: web.Request, route: Route) -> Principal:
    assert route.role is not None
    try:
        who = auth.principal(request.headers.get("Authorization"))
    except AuthError as exc:
        raise errors.Unauthorised(str(exc)) from None
    request[WHO] = who
    allowed = route.agency_ok if who.role is Role.AGENCY else who.may(route.role)
    if not allowed:
        raise errors.Forbidden(f"{route.method} {route.path} needs role {route.role.value} or "
                               f"above; token {who.name!r} has role {who.role.value}")
    return who


def _parse_query(request: web.Request, model: type[BaseModel] | None) -> BaseModel | None:
    keys = [k for k, _ in request.query.items()]
    if model is None:
        if keys:
            raise errors.UnknownParameter(
                f"{request.path} takes no query parameters, got {sorted(keys)}")
        return None
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise errors.RepeatedParameter(f"give each parameter once: {repeated}")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise errors.BadQuery(errors.pydantic_errors(exc)) from None


async def _parse_body(request: web.Request, model: type[BaseModel] | None) -> BaseModel | None:
    if model is None:
        return None
    raw = await request.read()
    if not raw.strip():
        raise errors.MissingBody(f"{request.method} {request.path} needs a JSON object body")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        found = errors.pydantic_errors(exc)
        if any(e.get("type") == "json_invalid" for e in found):
            raise errors.MalformedJson(found) from None
        raise errors.BadBody(found) from None


def _path_problem(name: str, value: str) -> str | None:
    if name in PATH_IDS:
        return ids.problem(value, PATH_IDS[name])
    if not value or len(value) > MAX_PATH_TEXT or not value.isprintable():
        return f"must be 1 to {MAX_PATH_TEXT} printable characters"
    return None
