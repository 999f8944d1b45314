"""The callback list: GET /callbacks (newest first, with attempts) and
POST /callbacks/{call_id}/call (ring the operator's phone, then the citizen; callbacks.py).
The list is derived in the records (records/callbacks.py)."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import structlog
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.api.auth import Role
from siaga112.api.errors import ApiError, BadBody
from siaga112.api.routing import Ctx, Route
from siaga112.api.schemas import _In
from siaga112.callbacks import CallbackDialer, CallbackError, NoSuchCallback
from siaga112.records.callbacks import list_callbacks
from siaga112.records.schemas import Callback

log = structlog.get_logger(__name__)


class CallbacksQuery(_In):
    status: Literal["open", "closed", "all"] = Field(
        "open", description="open (not yet reached), closed, or all")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000)


class CallbackList(BaseModel):
    callbacks: list[Callback]
    status: str
    limit: int
    offset: int
    calling: list[str] = Field(description="callbacks being called right now (their call_id)")


class CallBackBody(_In):
    operator: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="whose desk phone rings first; default: the token's desk")


class CallBackAnswer(BaseModel):
    callback: str = Field(description="the call being returned")
    call_id: str = Field(description="the callback call's own record")
    operator: str
    state: Literal["ringing_operator"] = "ringing_operator"


class CallbackNotFound(ApiError):
    status, error = 404, "callback_not_found"


class CallbackConflict(ApiError):
    status, error = 409, "callback_refused"


@runtime_checkable
class CallbacksDaemon(Protocol):
    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def callbacks(self) -> CallbackDialer: ...


class Callbacks:
    def __init__(self, daemon: CallbacksDaemon) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/callbacks", self.list, "Citizens to call back, newest first.",
                  Role.SUPERVISOR, query=CallbacksQuery, answer=CallbackList, errors=(503,)),
            Route("POST", "/callbacks/{call_id}/call", self.call_back,
                  "Call a citizen back: the operator's desk phone rings first, then the "
                  "citizen through the trunk their call came in on.",
                  Role.OPERATOR, body=CallBackBody, answer=CallBackAnswer, status=202,
                  errors=(404, 409, 503)),
        ]

    async def list(self, ctx: Ctx) -> BaseModel:
        q = ctx.q(CallbacksQuery)
        found = await list_callbacks(self._d.engine, q.status, q.limit, q.offset)
        calling = sorted(c.callback.call_id for c in self._d.callbacks.calls.values())
        return CallbackList(callbacks=found, status=q.status, limit=q.limit, offset=q.offset,
                            calling=calling)

    async def call_back(self, ctx: Ctx) -> BaseModel:
        callback_id = ctx.path("call_id")
        body = ctx.b(CallBackBody)
        operator = body.operator or getattr(ctx.who, "desk", None)
        if not operator:
            raise BadBody([{"type": "missing", "loc": ["body", "operator"],
                            "msg": "operator is required (this token sits at no desk)"}])
        try:
            call = await self._d.callbacks.call(callback_id, operator, ctx.by)
        except NoSuchCallback as exc:
            raise CallbackNotFound(str(exc)) from None
        except CallbackError as exc:
            raise CallbackConflict({"reason": exc.error, "message": str(exc)}) from None
        log.info("callback_by_api", callback=callback_id, call_id=call.call_id,
                 operator=operator, by=ctx.by)
        return CallBackAnswer(callback=callback_id, call_id=call.call_id, operator=operator)
