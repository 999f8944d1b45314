"""The calls: GET /calls and /calls/{call_id} (records, and whether the call is live now),
POST /calls/{call_id}/disposition (on the live call, else on its record) and
POST /calls/{call_id}/agencies (an agency onto a live, connected call). Commands on a live call
go through Stasis.command; its CommandError refusals are answered by api/errors.py."""

from __future__ import annotations

import structlog
from aiohttp import web
from pydantic import BaseModel

from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.errors import CallNotFound
from siaga112.api.routing import Ctx, Route, e164, json_response
from siaga112.api.schemas import (
    AgencyAnswer,
    AgencyBody,
    CallAnswer,
    CallList,
    CallsQuery,
    DispositionAnswer,
    DispositionBody,
)
from siaga112.call.errors import CallNotLive
from siaga112.call.items import CommandKind, CommandResult

log = structlog.get_logger(__name__)


class Calls:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        sup, op = Role.SUPERVISOR, Role.OPERATOR
        return [
            Route("GET", "/calls", self.calls, "Recorded calls, newest first.",
                  sup, query=CallsQuery, answer=CallList),
            Route("GET", "/calls/{call_id}", self.call,
                  "One call with its events and dispatches.",
                  sup, answer=CallAnswer, errors=(404,)),
            Route("POST", "/calls/{call_id}/disposition", self.disposition,
                  "Mark a call prank, ghost or genuine (and its category): a live call now, "
                  "an ended one on its record.",
                  op, body=DispositionBody, answer=DispositionAnswer,
                  errors=(404, 409, 503)),
            Route("POST", "/calls/{call_id}/agencies", self.agency,
                  "Bring an agency onto a live, connected call.",
                  op, body=AgencyBody, answer=AgencyAnswer, status=202, errors=(409, 503)),
        ]

    async def calls(self, ctx: Ctx) -> BaseModel:
        q = ctx.q(CallsQuery)
        caller = e164(q.caller, "caller") if q.caller is not None else None
        calls = await self._d.repository.list_calls(
            since=q.since, until=q.until, caller=caller,
            disposition=q.disposition.value if q.disposition else None,
            operator=q.operator, limit=q.limit, offset=q.offset,
        )
        return CallList(calls=calls, limit=q.limit, offset=q.offset)

    async def call(self, ctx: Ctx) -> BaseModel:
        call_id = ctx.path("call_id")
        live = call_id in self._d.stasis.sessions
        detail = await self._d.repository.get_call(call_id)
        if detail is None and not live:
            raise CallNotFound(f"no call with call_id {call_id!r}")
        return CallAnswer(
            call_id=call_id, live=live,
            call=detail.call if detail else None,
            events=detail.events if detail else [],
            dispatches=detail.dispatches if detail else [],
        )

    async def disposition(self, ctx: Ctx) -> BaseModel:
        call_id = ctx.path("call_id")
        body = ctx.b(DispositionBody)
        stasis = self._d.stasis
        try:
            result = await stasis.command(call_id, CommandKind.DISPOSITION,
                                          body.disposition.value, ctx.by)
        except CallNotLive:
            return await self._mark_record(call_id, body, ctx.by)
        if body.category is not None:
            result = await stasis.command(call_id, CommandKind.CATEGORY, body.category, ctx.by)
        log.info("call_marked", call_id=call_id, live=True, by=ctx.by)
        return DispositionAnswer(call_id=call_id, live=True, result=result, call=None)

    async def _mark_record(self, call_id: str, body: DispositionBody, by: str) -> BaseModel:
        """A call that has ended is marked on its record (the prank policy runs there)."""
        try:
            record = await self._d.repository.mark_call(
                call_id, by, disposition=body.disposition.value, category=body.category)
        except ValueError as exc:
            raise CallNotFound(str(exc)) from None
        log.info("call_marked", call_id=call_id, live=False, by=by)
        return DispositionAnswer(call_id=call_id, live=False, result=CommandResult.OK,
                                 call=record)

    async def agency(self, ctx: Ctx) -> web.StreamResponse:
        call_id = ctx.path("call_id")
        code = ctx.b(AgencyBody).agency
        result = await self._d.stasis.command(call_id, CommandKind.AGENCY, code, ctx.by)
        log.info("agency_requested_by_api", call_id=call_id, agency=code, by=ctx.by,
                 result=result.value)
        answer = AgencyAnswer(call_id=call_id, agency=code, result=result)
        return json_response(answer, 202 if result is CommandResult.DIALLING else 200)
