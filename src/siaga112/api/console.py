"""The web console (docs/console.md): the operator's screen and the supervisor's wall, static
files shipped in the package (siaga112/console/), and the few routes they need beyond the rest
of the API:

- GET /console/ and its files: no token (they hold no data; the page asks for one);
- GET /console/me: who the token is (role, desk), the agencies and categories by name;
- GET /console/events: the daemon's own events as server-sent events (api/live.py): the queue,
  the operators, every call's steps, pushed as they happen;
- GET /console/calls/{call_id}: the call card (api/card.py), with the caller's history;
- GET /console/alerts: dispatches past the team-moving deadline, complaints past theirs;
- POST /calls/{call_id}/note: the operator's free-text note, kept in the call's record.

Every action the console takes is an API call with its role (agency tokens cannot open it);
the console adds no way in of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import structlog
from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.exc import SQLAlchemyError

from siaga112.agencies import CATEGORIES
from siaga112.api.auth import Role
from siaga112.api.card import CallCard, build_card, merge
from siaga112.api.deps import DaemonLike
from siaga112.api.errors import ApiError, CallNotFound
from siaga112.api.live import TooManyStreams
from siaga112.api.routing import Ctx, Route
from siaga112.records.console import WallAlerts

log = structlog.get_logger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "console"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
         ".png": "image/png", ".svg": "image/svg+xml"}
# The page loads nothing from elsewhere, runs no inline script, and is framed by nobody.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
HEARTBEAT = 15.0  # seconds between keep-alive comments on an idle stream
DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


class TooManyConsoles(ApiError):
    status, error = 503, "too_many_consoles"


class AgencyEntry(BaseModel):
    code: str
    name: str
    lines: int


class MeAnswer(BaseModel):
    name: str
    role: str
    desk: str | None = Field(description="the desk phone an operator's token sits at")
    may_act: bool = Field(description="operator or admin: may act on calls and operators")
    may_block: bool = Field(description="admin: may block and unblock numbers")
    agencies: list[AgencyEntry]
    categories: dict[str, str] = Field(description="code -> English name (01..12)")
    moving_deadline_minutes: float
    wrapup_seconds: float


NOTE_MAX = 2000


def _lines_of_text(value: str) -> str:
    if not all(c.isprintable() or c == "\n" for c in value):
        raise ValueError("must hold only printable characters and line breaks")
    return value


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: Annotated[str, StringConstraints(min_length=1, max_length=NOTE_MAX),
                    AfterValidator(_lines_of_text)] = Field(
        description="free text, line breaks allowed, no other control characters")


class NoteAnswer(BaseModel):
    call_id: str
    live: bool
    note: str


class Console:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon
        self._files = ({p.name: p for p in STATIC.iterdir() if p.suffix in TYPES}
                       if STATIC.is_dir() else {})

    def routes(self) -> list[Route]:
        sup, op = Role.SUPERVISOR, Role.OPERATOR
        return [
            Route("GET", "/console", self.console_redirect, "The web console (to /console/).",
                  None, media="text/html"),
            Route("GET", "/console/", self.console_page, "The web console's page.", None,
                  media="text/html", errors=(404,)),
            Route("GET", "/console/me", self.console_me,
                  "Who this token is to the console: role, desk, agencies and categories.",
                  sup, answer=MeAnswer),
            Route("GET", "/console/events", self.console_events,
                  "The daemon's live events as server-sent events: queue, operators, calls.",
                  sup, media="text/event-stream", errors=(503,)),
            Route("GET", "/console/calls/{call_id}", self.console_card,
                  "A call's card: caller, line, wait, flags, marks, agencies, history.",
                  sup, answer=CallCard, errors=(404, 503)),
            Route("GET", "/console/alerts", self.console_alerts,
                  "Dispatches past the team-moving deadline and complaints past theirs.",
                  sup, answer=WallAlerts, errors=(503,)),
            Route("POST", "/calls/{call_id}/note", self.call_note,
                  "The operator's free-text note on a call (the record keeps the latest).",
                  op, body=NoteBody, answer=NoteAnswer, status=202, errors=(404, 503)),
            # last: /console/me, /events, /alerts above are not files
            Route("GET", "/console/{file}", self.console_file, "A file of the web console.",
                  None, media="text/javascript", errors=(404,)),
        ]

    # -- the files --------------------------------------------------------------------------

    async def console_redirect(self, ctx: Ctx) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/console/"})

    async def console_page(self, ctx: Ctx) -> web.StreamResponse:
        return self._file("index.html")

    async def console_file(self, ctx: Ctx) -> web.StreamResponse:
        return self._file(ctx.request.match_info["file"])

    def _file(self, name: str) -> web.StreamResponse:
        path = self._files.get(name)  # only the package's own files, by exact name
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": TYPES[path.suffix]})

    # -- who, and the live stream -----------------------------------------------------------

    async def console_me(self, ctx: Ctx) -> BaseModel:
        who = ctx.who
        assert who is not None
        s = self._d.settings
        return MeAnswer(
            name=who.name, role=who.role.value, desk=who.desk,
            may_act=who.may(Role.OPERATOR), may_block=who.may(Role.ADMIN),
            agencies=[AgencyEntry(code=a.code, name=a.name, lines=len(a.lines))
                      for a in s.agencies],
            categories=dict(CATEGORIES),
            moving_deadline_minutes=s.agency.moving_deadline_minutes,
            wrapup_seconds=s.queue.wrapup,
        )

    async def console_events(self, ctx: Ctx) -> web.StreamResponse:
        live = self._d.live
        try:
            stream = live.open()
        except TooManyStreams as exc:
            raise TooManyConsoles(str(exc)) from None
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(ctx.request)
            await resp.write(b"retry: 2000\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), HEARTBEAT)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                kind, payload = item
                await resp.write(f"event: {kind}\ndata: {payload}\n\n".encode())
        except (ConnectionError, RuntimeError):
            pass  # the console went away (closed, reloaded): nothing to answer
        finally:
            live.close_stream(stream)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()
        return resp

    # -- the card and the wall's alerts -----------------------------------------------------

    async def console_card(self, ctx: Ctx) -> BaseModel:
        call_id = ctx.path("call_id")
        d = self._d
        seen = d.live.events_of(call_id)
        live = call_id in d.stasis.sessions
        recorded = None
        records_ok = True
        try:
            recorded = await d.repository.get_call(call_id)
        except DB_ERRORS as exc:
            if not seen and not live:
                raise
            records_ok = False  # fail open: the live part of the card without the records
            log.warning("console_card_records_unavailable", call_id=call_id, error=str(exc))
        if recorded is None and not seen and not live:
            raise CallNotFound(f"no call with call_id {call_id!r}")
        s = d.settings
        card = build_card(call_id, merge(seen, recorded.events if recorded else []),
                          live=live, now=datetime.now(UTC),
                          lines={a.code: len(a.lines) for a in s.agencies},
                          moving_minutes=s.agency.moving_deadline_minutes)
        if recorded is not None and card.caller is None:
            card.caller, card.line_type = recorded.call.caller, recorded.call.line_type
        if card.caller is not None and records_ok:
            try:
                card.history = await d.repository.caller_history(
                    card.caller, s.policy.window_hours, exclude_call_id=call_id)
            except DB_ERRORS as exc:
                log.warning("console_history_unavailable", call_id=call_id, error=str(exc))
        return card

    async def console_alerts(self, ctx: Ctx) -> BaseModel:
        s = self._d.settings.agency
        now = datetime.now(UTC)
        return await self._d.repository.wall_alerts(
            dispatch_deadline=now - timedelta(minutes=s.moving_deadline_minutes),
            complaint_deadline=now - timedelta(hours=s.complaint_deadline_hours),
            since=now - timedelta(hours=24))

    # -- the note ---------------------------------------------------------------------------

    async def call_note(self, ctx: Ctx) -> BaseModel:
        call_id = ctx.path("call_id")
        text = ctx.b(NoteBody).text
        d = self._d
        live = call_id in d.stasis.sessions or bool(d.live.events_of(call_id))
        if not live and await d.repository.get_call(call_id) is None:
            raise CallNotFound(f"no call with call_id {call_id!r}")
        d.call_note(call_id, text, ctx.by)
        log.info("call_note", call_id=call_id, by=ctx.by, chars=len(text))
        return NoteAnswer(call_id=call_id, live=call_id in d.stasis.sessions, note=text)
