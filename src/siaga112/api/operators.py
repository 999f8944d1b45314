"""GET /queue and /operators (the desk now), POST /operators/{name}/state."""

from __future__ import annotations

import structlog
from pydantic import BaseModel

from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.errors import Forbidden, OperatorNotFound
from siaga112.api.routing import Ctx, Route
from siaga112.api.schemas import OperatorsAnswer, OperatorStateBody
from siaga112.model import OperatorSnapshot, OperatorState, QueueSnapshot

log = structlog.get_logger(__name__)


class Operators:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        sup, op = Role.SUPERVISOR, Role.OPERATOR
        return [
            Route("GET", "/queue", self.queue, "Callers waiting now, in the order served.",
                  sup, answer=QueueSnapshot),
            Route("GET", "/operators", self.operators, "Every operator's live state.",
                  sup, answer=OperatorsAnswer),
            Route("POST", "/operators/{name}/state", self.operator_state,
                  "Set an operator available, paused or logged out (kept in the PBX).",
                  op, body=OperatorStateBody, answer=OperatorSnapshot, errors=(404,)),
        ]

    async def queue(self, ctx: Ctx) -> BaseModel:
        return self._d.queue.snapshot()

    async def operators(self, ctx: Ctx) -> BaseModel:
        return OperatorsAnswer(operators=self._d.desk.snapshot())

    async def operator_state(self, ctx: Ctx) -> BaseModel:
        name = ctx.path("name")
        body = ctx.b(OperatorStateBody)
        desk = self._d.desk
        if name not in desk:
            raise OperatorNotFound(name)
        who = ctx.who
        if who is not None and who.role is Role.OPERATOR and who.desk not in (None, name):
            raise Forbidden(f"token {who.name!r} sits at desk {who.desk}: it sets that "
                            "operator's state only")
        desk.choose(name, OperatorState(body.state.value), body.reason or None, persist=True)
        log.info("operator_state_set", operator=name, state=body.state.value, by=ctx.by)
        return next(o for o in desk.snapshot() if o.operator == name)
