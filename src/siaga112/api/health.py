"""GET /health (liveness), /ready (what is down, from the daemon's parts) and /metrics."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.routing import Ctx, Route, json_response
from siaga112.api.schemas import HealthAnswer, ReadyAnswer
from siaga112.api.standby import Lead
from siaga112.metrics import CONTENT_TYPE

READY_DB_TIMEOUT = 1.0


class Health:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon
        self._lead = Lead(daemon)

    def routes(self) -> list[Route]:
        sup = Role.SUPERVISOR
        return [
            Route("GET", "/health", self.health, "Liveness: 200 while the event loop runs.",
                  None, answer=HealthAnswer),
            Route("GET", "/ready", self.ready,
                  "Readiness: ARI connected, database answers, MQTT connected or disabled.",
                  sup, answer=ReadyAnswer, errors=(503,)),
            Route("GET", "/metrics", self.metrics, "Prometheus metrics (text format).",
                  None if self._d.settings.api.metrics_public else sup, media="text/plain"),
        ]

    async def health(self, ctx: Ctx) -> BaseModel:
        return HealthAnswer(role=self._role())

    async def ready(self, ctx: Ctx) -> web.StreamResponse:
        d = self._d
        ari = d.events.connected.is_set()
        database = await d.repository.ping(READY_DB_TIMEOUT)
        mqtt = self._mqtt_state()
        problems = list(d.writer.problems)
        role = self._role()
        ready = role == "active" and ari and database and mqtt is not False and not problems
        answer = ReadyAnswer(ready=ready, role=role, ari=ari, database=database, mqtt=mqtt,
                             journal_backlog=int(d.writer.backlog),
                             journal="degraded" if problems else "ok", journal_problems=problems,
                             overflow=d.overflow.active, overflow_since=d.overflow.active_since)
        return json_response(answer, 200 if ready else 503)

    def _role(self) -> Literal["active", "standby"]:
        return "active" if self._lead.active else "standby"

    def _mqtt_state(self) -> bool | Literal["disabled"]:
        connected = getattr(self._d.notifier, "connected", None)
        if not self._d.settings.mqtt.enabled or connected is None:
            return "disabled"
        return bool(connected)

    async def metrics(self, ctx: Ctx) -> web.StreamResponse:
        return web.Response(body=self._d.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
