"""Instant recall through the API (call/recall.py): POST /calls/{call_id}/recall plays the call's
last seconds to its operator, on the operator's leg only, as `*6` does; POST
/calls/{call_id}/recall/return brings the operator back to the call, as `#` does."""

from __future__ import annotations

import structlog
from pydantic import BaseModel, Field

from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.routing import Ctx, Route
from siaga112.call.items import CommandKind, CommandResult

log = structlog.get_logger(__name__)


class RecallAnswer(BaseModel):
    call_id: str
    result: CommandResult = Field(description="'recalling' (the operator hears the recall) or "
                                              "'ok' (back to the call)")


class Recall:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        op = Role.OPERATOR
        return [
            Route("POST", "/calls/{call_id}/recall", self.recall,
                  "Instant recall: the operator of a live, connected call hears its last "
                  "30 s again (recording.recall_seconds), on their own leg only.",
                  op, answer=RecallAnswer, errors=(409, 503)),
            Route("POST", "/calls/{call_id}/recall/return", self.back,
                  "Back to the call from an instant recall.",
                  op, answer=RecallAnswer, errors=(409, 503)),
        ]

    async def recall(self, ctx: Ctx) -> BaseModel:
        return await self._command(ctx, CommandKind.RECALL)

    async def back(self, ctx: Ctx) -> BaseModel:
        return await self._command(ctx, CommandKind.RECALL_RETURN)

    async def _command(self, ctx: Ctx, kind: CommandKind) -> BaseModel:
        call_id = ctx.path("call_id")
        result = await self._d.stasis.command(call_id, kind, "", ctx.by)
        log.info("recall_by_api", call_id=call_id, kind=kind.value, by=ctx.by)
        return RecallAnswer(call_id=call_id, result=result)
