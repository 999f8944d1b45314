"""The blocklist: GET /blocklist, POST /blocklist (block a number), DELETE /blocklist/{number}.
Blocks and unblocks go through the block policy, which tells screening at once."""

from __future__ import annotations

from pydantic import BaseModel

from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.errors import BadBlock, NotBlocked
from siaga112.api.routing import Ctx, Route, e164
from siaga112.api.schemas import (
    BlockAnswer,
    BlockBody,
    BlocklistAnswer,
    BlocklistQuery,
    UnblockAnswer,
    UnblockQuery,
)


class Blocklist:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        sup, admin = Role.SUPERVISOR, Role.ADMIN
        return [
            Route("GET", "/blocklist", self.blocklist, "Blocked numbers.",
                  sup, query=BlocklistQuery, answer=BlocklistAnswer),
            Route("POST", "/blocklist", self.block,
                  "Block a number for some hours, or until unblocked (hours null).",
                  admin, body=BlockBody, answer=BlockAnswer, status=201),
            Route("DELETE", "/blocklist/{number}", self.unblock, "End a number's block.",
                  admin, query=UnblockQuery, answer=UnblockAnswer, errors=(404,)),
        ]

    async def blocklist(self, ctx: Ctx) -> BaseModel:
        q = ctx.q(BlocklistQuery)
        return BlocklistAnswer(blocks=await self._d.repository.list_blocks(q.include_expired))

    async def block(self, ctx: Ctx) -> BaseModel:
        body = ctx.b(BlockBody)
        number = e164(body.number, "number")
        try:
            entry = await self._d.policy.block(number, body.hours, body.reason, ctx.by)
        except ValueError as exc:
            raise BadBlock(str(exc)) from None
        return BlockAnswer.model_validate(entry.model_dump())

    async def unblock(self, ctx: Ctx) -> BaseModel:
        number = e164(ctx.path("number"), "number")
        ended = await self._d.policy.unblock(number, ctx.q(UnblockQuery).reason, ctx.by)
        if not ended:
            raise NotBlocked(number)
        return UnblockAnswer(number=number, unblocked=True)
