"""Advanced Mobile Location in (ETSI TS 103 625, location/aml.py): POST /aml with an ``aml``
token (its own role: it may do nothing else), body ``key=value&...``; and GET /aml, what was
received and what was kept because it was refused or matched no call. The API itself speaks
plain HTTP on loopback: the HTTPS the handsets' messages come over ends at the centre's
reverse proxy."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from aiohttp import web
from pydantic import BaseModel, Field

from siaga112.api.auth import Role
from siaga112.api.errors import ApiError
from siaga112.api.routing import Ctx, Route, json_response
from siaga112.location.intake import AmlIntake


class AmlAnswer(BaseModel):
    outcome: Literal["matched", "unmatched"]
    call_id: str | None = Field(None, description="the call the location was put on")


class AmlKept(BaseModel):
    at: datetime
    outcome: str
    by: str
    number: str | None = None
    problem: str
    body: str


class AmlReport(BaseModel):
    counts: dict[str, int] = Field(description="since the daemon started: matched, unmatched, "
                                   "invalid, lost (not kept on disk)")
    kept: list[AmlKept] = Field(description="the latest refused or unmatched messages, newest "
                                "first (all of them are in <state_dir>/aml/kept.jsonl)")


class BadAml(ApiError):
    status, error = 422, "bad_aml"


@runtime_checkable
class AmlDaemon(Protocol):
    @property
    def aml(self) -> AmlIntake: ...


class Aml:
    def __init__(self, daemon: AmlDaemon) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/aml", self.receive,
                  "An AML message (ETSI TS 103 625 key=value body): the caller's handset "
                  "location, put on the live call from that number or its call that ended in "
                  "the last 10 minutes.",
                  Role.AML, answer=AmlAnswer, status=202, media="application/json",
                  errors=(422,)),
            Route("GET", "/aml", self.report,
                  "AML messages received, and the latest refused or unmatched ones.",
                  Role.SUPERVISOR, answer=AmlReport),
        ]

    async def receive(self, ctx: Ctx) -> web.StreamResponse:
        body = await ctx.request.read()
        got = await self._d.aml.receive(body, ctx.by)
        if got.outcome == "invalid":
            detail: list[dict[str, Any]] = [{"type": "aml_field", "loc": ["body", got.field],
                                             "msg": f"{got.field}: {got.problem}"}]
            raise BadAml(detail)
        answer = AmlAnswer(outcome="matched" if got.call_id else "unmatched",
                           call_id=got.call_id)
        return json_response(answer, 202)

    async def report(self, ctx: Ctx) -> BaseModel:
        intake = self._d.aml
        kept = [AmlKept.model_validate(e) for e in reversed(intake.kept)]
        return AmlReport(counts=dict(intake.counts), kept=kept)
