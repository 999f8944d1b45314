"""Reports from the records: GET /referrals (JSON, or CSV for the ministry) and GET /kpis."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import BaseModel

from siaga112.api.auth import Role
from siaga112.api.deps import DaemonLike
from siaga112.api.errors import BadQuery
from siaga112.api.routing import Ctx, Route
from siaga112.api.schemas import KpisQuery, ReferralsAnswer, ReferralsQuery
from siaga112.records.schemas import Kpis

REFERRAL_CSV_COLUMNS = ("number", "count", "first_at", "last_at", "referred_at", "exported_at")


class Reports:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon

    def routes(self) -> list[Route]:
        sup = Role.SUPERVISOR
        return [
            Route("GET", "/referrals", self.referrals,
                  "Numbers referred to the ministry, as JSON or as CSV.",
                  sup, query=ReferralsQuery, answer=ReferralsAnswer, also_csv=True),
            Route("GET", "/kpis", self.kpis, "Service KPIs over [since, until).",
                  sup, query=KpisQuery, answer=Kpis),
        ]

    async def referrals(self, ctx: Ctx) -> BaseModel | web.StreamResponse:
        q = ctx.q(ReferralsQuery)
        referrals = await self._d.repository.referrals(only_new=q.only_new)
        if q.format == "json":
            return ReferralsAnswer(referrals=referrals)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(REFERRAL_CSV_COLUMNS)
        for r in referrals:
            row = r.model_dump(mode="json")
            writer.writerow(["" if row[c] is None else row[c] for c in REFERRAL_CSV_COLUMNS])
        day = datetime.now(UTC).strftime("%Y%m%d")
        return web.Response(
            text=out.getvalue(), content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="referrals-{day}.csv"'},
        )

    async def kpis(self, ctx: Ctx) -> BaseModel:
        q = ctx.q(KpisQuery)
        until = q.until or datetime.now(UTC)
        since = q.since or until - timedelta(hours=24)
        if since >= until:
            raise BadQuery(f"since ({since.isoformat()}) must be before until "
                           f"({until.isoformat()})")
        return await self._d.repository.kpis(since, until)
