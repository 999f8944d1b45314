"""Key figures of the centre over a period (GET /kpis, `siaga112 calls kpis`): answered within
10 s, waits, abandoned, prank and ghost shares, per operator and per agency. All SQL is
parameterised."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.records.callbacks import callback_kpi
from siaga112.records.schemas import AgencyKpi, Kpis, OperatorKpi

_KPI_TOTALS = text(
    """
    SELECT count(*) AS calls,
      count(*) FILTER (WHERE disposition IS DISTINCT FROM 'blocked') AS offered,
      count(*) FILTER (WHERE operator_answered_at IS NOT NULL) AS answered,
      count(*) FILTER (WHERE operator_answered_at - arrived_at <= interval '10 seconds')
        AS within_10s,
      avg(wait_seconds) FILTER (WHERE operator_answered_at IS NOT NULL) AS mean_wait,
      percentile_cont(0.9) WITHIN GROUP (ORDER BY wait_seconds)
        FILTER (WHERE operator_answered_at IS NOT NULL) AS p90_wait,
      count(*) FILTER (WHERE disposition = 'abandoned') AS abandoned,
      count(*) FILTER (WHERE disposition = 'prank') AS prank,
      count(*) FILTER (WHERE disposition = 'ghost') AS ghost
    FROM calls WHERE arrived_at >= :since AND arrived_at < :until
      AND callback_of IS NULL
    """
)
_KPI_OPERATORS = text(
    """
    SELECT operator, count(*) AS calls, avg(talk_seconds) AS mean_talk,
      count(*) FILTER (WHERE disposition = 'prank') AS prank,
      count(*) FILTER (WHERE disposition = 'ghost') AS ghost
    FROM calls
    WHERE arrived_at >= :since AND arrived_at < :until AND operator IS NOT NULL
    GROUP BY operator ORDER BY operator
    """
)
_KPI_AGENCIES = text(
    """
    SELECT d.agency, count(*) AS dispatches,
      avg(extract(epoch FROM d.accepted_at - d.requested_at)) AS mean_accept,
      avg(extract(epoch FROM d.moving_at - d.requested_at)) AS mean_moving,
      count(*) FILTER (WHERE d.overdue_at IS NOT NULL) AS overdue
    FROM dispatches d JOIN calls c USING (call_id)
    WHERE c.arrived_at >= :since AND c.arrived_at < :until AND d.agency IS NOT NULL
    GROUP BY d.agency ORDER BY d.agency
    """
)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


async def kpis(engine: AsyncEngine, since: datetime, until: datetime) -> Kpis:
    params = {"since": since, "until": until}
    async with engine.connect() as conn:
        t = (await conn.execute(_KPI_TOTALS, params)).one()
        ops = (await conn.execute(_KPI_OPERATORS, params)).all()
        ags = (await conn.execute(_KPI_AGENCIES, params)).all()
        callbacks, called_back = await callback_kpi(conn, since, until)
    return Kpis(
        since=since,
        until=until,
        calls=t.calls,
        offered=t.offered,
        answered=t.answered,
        answered_within_10s_pct=_pct(t.within_10s, t.offered),
        mean_wait_seconds=_float(t.mean_wait),
        p90_wait_seconds=_float(t.p90_wait),
        abandoned_pct=_pct(t.abandoned, t.offered),
        prank_pct=_pct(t.prank, t.offered),
        ghost_pct=_pct(t.ghost, t.offered),
        callbacks=callbacks,
        called_back_within_5min_pct=_pct(called_back, callbacks),
        per_operator=[
            OperatorKpi(
                operator=r.operator,
                calls=r.calls,
                mean_talk_seconds=_float(r.mean_talk),
                prank=r.prank,
                ghost=r.ghost,
            )
            for r in ops
        ],
        per_agency=[
            AgencyKpi(
                agency=r.agency,
                dispatches=r.dispatches,
                mean_accept_seconds=_float(r.mean_accept),
                mean_moving_seconds=_float(r.mean_moving),
                overdue=r.overdue,
            )
            for r in ags
        ],
    )
