"""Supervisors through the API (supervision.py): POST /supervision rings a supervisor's desk
phone and, when it answers, has it listen to, whisper to or barge into an operator's call;
GET /supervision lists what runs now; DELETE /supervision/{supervision_id} ends one. Every use
is audited on the call (SUPERVISION_STARTED and SUPERVISION_ENDED events)."""

from __future__ import annotations

import structlog
from pydantic import BaseModel, Field

from siaga112 import ids
from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.errors import ApiError
from siaga112.api.routing import Ctx, Route
from siaga112.supervision import Mode, NotOnCall, Refused, Request, Supervision

log = structlog.get_logger(__name__)


class SupervisionBody(BaseModel):
    phone: ids.Id = Field(description="the supervisor's desk phone (supervision.phones), "
                                      "rung first")
    operator: ids.Id = Field(description="the operator whose call it is, e.g. op1")
    mode: Mode = Field(description="listen, whisper (to the operator only) or barge")


class SupervisionView(BaseModel):
    supervision_id: str
    phone: str
    mode: Mode
    operator: str
    call_id: str | None = None
    by: str
    since: float | None = Field(default=None, description="epoch seconds, once answered")


class SupervisionList(BaseModel):
    active: list[SupervisionView]


class OperatorNotOnCall(ApiError):
    status, error = 409, "operator_not_on_call"


class SupervisionRefused(ApiError):
    status, error = 422, "supervision_refused"


class SupervisionNotFound(ApiError):
    status, error = 404, "supervision_not_found"


class SupervisionOff(ApiError):
    status, error = 503, "supervision_unavailable"


class Supervise:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon
        self._s: Supervision | None = getattr(daemon, "supervision", None)

    def routes(self) -> list[Route]:
        sup = Role.SUPERVISOR
        return [
            Route("POST", "/supervision", self.start,
                  "Ring a supervisor's desk phone; answered, it listens to, whispers to or "
                  "barges into the operator's call.",
                  sup, body=SupervisionBody, answer=SupervisionView, status=202,
                  errors=(409, 422, 503)),
            Route("GET", "/supervision", self.list, "Supervisions running now.",
                  sup, answer=SupervisionList),
            Route("DELETE", "/supervision/{supervision_id}", self.end,
                  "End a supervision (the supervisor's phone is hung up).",
                  sup, answer=SupervisionView, errors=(404,)),
        ]

    def _service(self) -> Supervision:
        if self._s is None:
            raise SupervisionOff("supervision is not running on this daemon")
        return self._s

    async def start(self, ctx: Ctx) -> BaseModel:
        body = ctx.b(SupervisionBody)
        service = self._service()
        if body.operator not in self._d.settings.queue.operators:
            raise SupervisionRefused(f"no operator {body.operator!r}")
        try:
            sid = await service.ring(body.phone, Request(body.mode, body.operator), ctx.by)
        except NotOnCall as exc:
            raise OperatorNotOnCall(str(exc)) from None
        except Refused as exc:
            raise SupervisionRefused(str(exc)) from None
        log.info("supervision_by_api", supervision_id=sid, phone=body.phone,
                 mode=body.mode.value, operator=body.operator, by=ctx.by)
        return SupervisionView(supervision_id=sid, phone=body.phone, mode=body.mode,
                               operator=body.operator, by=ctx.by)

    async def list(self, ctx: Ctx) -> BaseModel:
        service = self._service()
        return SupervisionList(active=[SupervisionView(**a.view())
                                       for a in service.active.values()])

    async def end(self, ctx: Ctx) -> BaseModel:
        sid = ctx.path("supervision_id")
        service = self._service()
        found = service.active.get(sid)
        if found is None:
            raise SupervisionNotFound(f"no supervision {sid!r} running")
        view = SupervisionView(**found.view())
        await service.end(sid, ctx.by)
        return view
