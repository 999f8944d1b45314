"""POST /dispatches/{dispatch_id}/moving: an agency reports its team on the way, for its own
dispatches only (what its MQTT `moving` message does)."""

from __future__ import annotations

import structlog
from pydantic import BaseModel

from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.errors import DispatchNotFound, DispatchOfAnotherCall, Forbidden
from siaga112.api.routing import Ctx, Route
from siaga112.api.schemas import MovingAnswer, MovingBody

log = structlog.get_logger(__name__)


class Dispatches:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/dispatches/{dispatch_id}/moving", self.moving,
                  "An agency reports its team is on the way (its own dispatches only).",
                  Role.OPERATOR, body=MovingBody, answer=MovingAnswer, status=202,
                  agency_ok=True, errors=(404, 409, 503)),
        ]

    async def moving(self, ctx: Ctx) -> BaseModel:
        dispatch_id = ctx.path("dispatch_id")
        body = ctx.b(MovingBody)
        who = ctx.who
        if who is not None and who.role is Role.AGENCY and who.agency != body.agency:
            raise Forbidden(f"token {who.name!r} speaks for agency {who.agency}, "
                            f"not {body.agency}")
        # Only a dispatch that exists and is this agency's: no moving_at set on another
        # agency's dispatch (silencing its overdue alert), no phantom rows.
        found = await self._d.repository.agency_dispatch(dispatch_id, body.agency)
        if found is None:
            raise DispatchNotFound(dispatch_id, body.agency)
        if found.call_id != body.call_id:
            raise DispatchOfAnotherCall(dispatch_id, found.call_id, body.call_id)
        self._d.team_moving(body.agency, found.call_id, dispatch_id, ctx.by)
        log.info("team_moving_by_api", dispatch_id=dispatch_id, call_id=body.call_id,
                 agency=body.agency, by=ctx.by)
        return MovingAnswer(dispatch_id=dispatch_id, call_id=body.call_id, agency=body.agency)
