"""The aiohttp application of the operations API: the route table (each resource module's
routes; a standby refuses those that change state, api/standby.py), the one middleware that
answers errors (api/errors.py) and logs each request, and starting and stopping. Runs on the
daemon's event loop (settings.api: host, port, tokens). The API is no part of the call path:
a port it cannot bind is logged and the daemon goes on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from siaga112.api.aml import Aml, AmlDaemon
from siaga112.api.auth import Authenticator, Role
from siaga112.api.blocklist import Blocklist
from siaga112.api.callbacks import Callbacks, CallbacksDaemon
from siaga112.api.calls import Calls
from siaga112.api.console import Console
from siaga112.api.deps import DaemonLike
from siaga112.api.dispatches import Dispatches
from siaga112.api.errors import error_response
from siaga112.api.health import Health
from siaga112.api.openapi import openapi
from siaga112.api.operators import Operators
from siaga112.api.recall import Recall
from siaga112.api.reports import Reports
from siaga112.api.routing import WHO, Ctx, Route, endpoint
from siaga112.api.standby import Lead
from siaga112.api.supervision import Supervise

log = structlog.get_logger(__name__)

MAX_BODY = 64 * 1024


class Api:
    def __init__(self, daemon: DaemonLike) -> None:
        self._settings = daemon.settings.api
        self._auth = Authenticator(self._settings.tokens)
        self._live = daemon.live
        self.routes: list[Route] = [
            *Health(daemon).routes(),
            *Operators(daemon).routes(),
            *Calls(daemon).routes(),
            *Blocklist(daemon).routes(),
            *Reports(daemon).routes(),
            *Dispatches(daemon).routes(),
            *(Callbacks(daemon).routes() if isinstance(daemon, CallbacksDaemon) else []),
            *(Aml(daemon).routes() if isinstance(daemon, AmlDaemon) else []),
            *Recall(daemon).routes(),
            *Supervise(daemon).routes(),
            *Console(daemon).routes(),
            Route("GET", "/openapi.json", self.openapi, "This API as an OpenAPI document.",
                  Role.SUPERVISOR),
        ]
        self.app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY)
        lead = Lead(daemon)  # a standby changes nothing: every write route asks it first
        for r in self.routes:
            self.app.router.add_route(r.method, r.path, endpoint(r, self._auth, lead.check))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # bound port once started

    async def start(self) -> None:
        s = self._settings
        if not len(self._auth):
            log.warning("api_no_tokens", hint="every route but /health answers 401")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, s.host, s.port)
        try:
            await site.start()
        except OSError as exc:
            # Fail open: the API is for people and scripts; calls flow without it.
            log.error("api_not_started", host=s.host, port=s.port, error=str(exc))
            await runner.cleanup()
            return
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else s.port
        log.info("api_started", host=s.host, port=self.port)

    async def stop(self) -> None:
        self._live.close()  # end the consoles' event streams, so the server stops at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.info("api_stopped")

    async def openapi(self, ctx: Ctx) -> web.StreamResponse:
        return web.json_response(openapi(self.routes))

    @web.middleware
    async def _middleware(
        self, request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except Exception as exc:  # every refusal and fault answered in one place
            response = error_response(request, exc)
        who = request.get(WHO)
        level = log.debug if request.path == "/health" else log.info
        level("http_request", method=request.method, path=request.path,
              status=response.status, ms=round((time.perf_counter() - started) * 1000, 1),
              who=who.name if who else None)
        return response
