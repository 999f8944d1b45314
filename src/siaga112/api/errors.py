"""Every way the API refuses a request: one exception class per failure, carrying its HTTP
status, its error id and its detail, and `error_response`, the one place (called by the
middleware in app.py) where any exception becomes the JSON answer ``{"error", "detail"}``.
A refused command on a live call (call/errors.py) gets its status here too, in CALL_FAILURES.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import structlog
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from siaga112.api.schemas import ErrorAnswer
from siaga112.call.errors import (
    CallNotConnected,
    CallNotLive,
    CallNotResponding,
    CommandError,
    UnknownAgency,
    UnknownCategory,
)

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """Answered as ``{"error": error, "detail": detail}`` with `status` (and `headers`)."""

    status: ClassVar[int] = 500
    error: ClassVar[str] = "internal_error"
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, detail: object = None) -> None:
        super().__init__(f"{self.status} {self.error}: {detail}")
        self.detail = detail


# -- 400: the body cannot be read --------------------------------------------------------------


class MissingBody(ApiError):
    status, error = 400, "missing_body"


class MalformedJson(ApiError):
    status, error = 400, "malformed_json"


# -- 401 and 403: who may ----------------------------------------------------------------------


class Unauthorised(ApiError):
    status, error = 401, "unauthorised"
    headers = {"WWW-Authenticate": 'Bearer realm="siaga112"'}


class Forbidden(ApiError):
    status, error = 403, "forbidden"


# -- 404 and 409: no such thing, or not in a state for this ------------------------------------


class CallNotFound(ApiError):
    status, error = 404, "call_not_found"


class OperatorNotFound(ApiError):
    status, error = 404, "operator_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no operator named {name!r}")


class NotBlocked(ApiError):
    status, error = 404, "not_blocked"

    def __init__(self, number: str) -> None:
        super().__init__(f"{number} has no active block")


class DispatchNotFound(ApiError):
    status, error = 404, "dispatch_not_found"

    def __init__(self, dispatch_id: str, agency: str) -> None:
        super().__init__(f"agency {agency} has no dispatch {dispatch_id!r}")


class DispatchOfAnotherCall(ApiError):
    status, error = 409, "dispatch_of_another_call"

    def __init__(self, dispatch_id: str, its_call: str, named: str) -> None:
        super().__init__(f"dispatch {dispatch_id!r} is of call {its_call!r}, not {named!r}")


# -- 422: a parameter or field is invalid ------------------------------------------------------


class BadQuery(ApiError):
    status, error = 422, "bad_query"


class UnknownParameter(ApiError):
    status, error = 422, "unknown_parameter"


class RepeatedParameter(ApiError):
    status, error = 422, "repeated_parameter"


class BadBody(ApiError):
    status, error = 422, "bad_body"


class BadPathParameter(ApiError):
    status, error = 422, "bad_path_parameter"

    def __init__(self, name: str, problem: str) -> None:
        super().__init__([{"type": "bad_id", "loc": ["path", name], "msg": f"{name} {problem}"}])


class BadNumber(ApiError):
    status, error = 422, "bad_number"


class BadBlock(ApiError):
    status, error = 422, "bad_block"


# -- 503: a dependency did not answer ----------------------------------------------------------


class DatabaseUnavailable(ApiError):
    status, error = 503, "database_unavailable"

    def __init__(self) -> None:
        super().__init__("the records database did not answer")


class Standby(ApiError):
    """A change asked of a daemon that does not lead (HA, docs/cluster.md): a standby, or a
    leader that has just learnt another daemon leads. `leader`: the active one, if known."""

    status, error = 503, "standby"

    def __init__(self, node: str | None, leader: str | None) -> None:
        me = f"this daemon ({node})" if node else "this daemon"
        if leader and leader != node:
            where = f"the active daemon, {leader}"
        else:
            where = "the active daemon (which one is not known here: its /ready answers 200)"
        super().__init__(f"{me} is the standby and changes nothing: send writes to {where}")


# -- a live call's refusals (call/errors.py), each with its status -----------------------------

CALL_FAILURES: dict[type[CommandError], tuple[int, str]] = {
    CallNotLive: (409, "call_not_live"),
    CallNotConnected: (409, "call_not_connected"),
    UnknownAgency: (422, "unknown_agency"),
    UnknownCategory: (422, "unknown_category"),
    CallNotResponding: (503, "call_not_responding"),
}

# What each status means, for the OpenAPI document.
STATUS_TEXT = {
    400: "malformed request (no body, not JSON)",
    401: "no token, or an unknown one",
    403: "the token's role is too low",
    404: "no such thing",
    409: "the call is not in a state for this, or ids that do not belong together",
    422: "a parameter or field is invalid (detail names it)",
    503: "a dependency did not answer; on a change: this daemon is the standby (error standby)",
}


def answer(status: int, error: str, detail: object = None,
           headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=ErrorAnswer(error=error, detail=detail).model_dump_json(),
                        status=status, content_type="application/json", headers=headers)


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The one mapping of an exception to the API's JSON error answer."""
    if isinstance(exc, ApiError):
        return answer(exc.status, exc.error, exc.detail, exc.headers or None)
    if isinstance(exc, CommandError):
        status, error = next((v for t, v in CALL_FAILURES.items() if isinstance(exc, t)),
                             (409, "command_refused"))
        return answer(status, error, str(exc))
    if isinstance(exc, web.HTTPException):  # no such route, wrong method, body too large
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return answer(exc.status, _snake(exc.reason), f"{request.method} {request.path}",
                      headers)
    if isinstance(exc, SQLAlchemyError | OSError | TimeoutError):
        log.warning("api_database_unavailable", path=request.path, error=str(exc))
        return error_response(request, DatabaseUnavailable())
    log.exception("api_handler_failed", method=request.method, path=request.path)
    return error_response(request, ApiError("see the daemon's log"))  # 500 internal_error


def _snake(reason: str) -> str:
    return re.sub(r"\W+", "_", reason.strip().lower()).strip("_") or "error"


def pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors, JSON-safe, without the input echoed back (it may be long)."""
    out: list[dict[str, Any]] = json.loads(exc.json(include_url=False, include_input=False))
    for e in out:
        e.pop("ctx", None)
    return out
