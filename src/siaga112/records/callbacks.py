"""The callback list: citizens to call back, derived from the calls' records.

A call goes on the list when it ended with a number to call (``caller``), was no callback
itself, and either was ``dropped`` (lost with a node) or ``abandoned`` before an operator
answered it (hung up while waiting or ringing; ``reason`` says ``silent`` when the caller had
stayed silent). The entry is recomputed with its call's row (records/apply.py, in the same
transaction as the events), so it comes through the journal like every record and is never lost
while PostgreSQL is away.

An entry closes by itself when a later call with the same number reached an operator: the
citizen called again (``called_again``) or an operator's callback was answered
(``called_back``). ``attempts`` counts the callback calls made for it (answered or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import Text as TextType

from siaga112.records.driver import Tx
from siaga112.records.schemas import Callback

_QUALIFIES = """
    c.caller IS NOT NULL AND c.ended_at IS NOT NULL AND c.callback_of IS NULL
    AND (c.disposition = 'dropped'
         OR (c.disposition = 'abandoned' AND c.operator_answered_at IS NULL))
"""

# _QUALIFIES is a constant; every value is a parameter.
_ENTRIES = text(
    f"""
    WITH gone AS (
      DELETE FROM callbacks cb USING calls c
      WHERE cb.call_id = c.call_id AND cb.call_id = ANY(:call_ids) AND NOT ({_QUALIFIES})
    )
    INSERT INTO callbacks AS cb (call_id, caller, caller_raw, line_type, trunk, reason,
                                 arrived_at, ended_at)
    SELECT c.call_id, c.caller, c.caller_raw, c.line_type, c.trunk,
      CASE WHEN c.disposition = 'dropped' THEN 'dropped'
           WHEN 'silent' = ANY(c.flags) THEN 'silent' ELSE 'abandoned' END,
      c.arrived_at, c.ended_at
    FROM calls c
    WHERE c.call_id = ANY(:call_ids) AND {_QUALIFIES}
    ON CONFLICT (call_id) DO UPDATE SET
      caller = excluded.caller, caller_raw = excluded.caller_raw,
      line_type = excluded.line_type, trunk = excluded.trunk, reason = excluded.reason,
      arrived_at = excluded.arrived_at, ended_at = excluded.ended_at
    WHERE (cb.caller, cb.caller_raw, cb.line_type, cb.trunk, cb.reason, cb.arrived_at,
           cb.ended_at) IS DISTINCT FROM (excluded.caller, excluded.caller_raw,
           excluded.line_type, excluded.trunk, excluded.reason, excluded.arrived_at,
           excluded.ended_at)
    """  # noqa: S608
).bindparams(bindparam("call_ids", type_=ARRAY(TextType)))

# The entries this batch's calls can change. An entry's state (attempts, closed) is a function
# of the calls: its attempts of the calls whose callback_of it is, its closing of the first call
# of its number, arrived after it, that reached an operator. Calls change only where a batch
# recomputed them (:call_ids), so an entry can change only when it is one of them, one of them
# is a callback of it or closed it, or one of them of its number reached an operator after it
# arrived and no later than it closed; each kind is found by an index (per number through a
# lateral join, so that the planner never scans the whole list). A number that calls hundreds
# of times (the ghost and prank callers most calls come from) kept hundreds of entries, and
# each batch recomputed and rewrote them all, each through a scan of the number's later calls:
# measured in docs/load-testing.md.
_TODO = text(
    """
    SELECT o.call_id FROM callbacks o WHERE o.call_id = ANY(:call_ids)
    UNION ALL
    SELECT o.call_id FROM calls r JOIN callbacks o ON o.call_id = r.callback_of
    WHERE r.call_id = ANY(:call_ids)
    UNION ALL
    SELECT o.call_id FROM callbacks o WHERE o.closed_by_call = ANY(:call_ids)
    UNION ALL
    SELECT e.call_id FROM (
      SELECT r.caller, min(r.operator_answered_at) AS first_reached,
        max(r.arrived_at) AS last_arrived
      FROM calls r
      WHERE r.call_id = ANY(:call_ids) AND r.operator_answered_at IS NOT NULL
        AND r.caller IS NOT NULL
      GROUP BY r.caller
    ) n CROSS JOIN LATERAL (
      SELECT o.call_id FROM callbacks o
      WHERE o.caller = n.caller AND o.closed_at IS NULL AND o.arrived_at < n.last_arrived
      UNION ALL
      SELECT o.call_id FROM callbacks o
      WHERE o.caller = n.caller AND o.closed_at >= n.first_reached
        AND o.arrived_at < n.last_arrived
    ) e
    """
).bindparams(bindparam("call_ids", type_=ARRAY(TextType)))

# Their state, each row written only when it changes.
_STATE = text(
    """
    UPDATE callbacks cb SET
      attempts = s.attempts, last_attempt_at = s.last_attempt_at,
      closed_at = s.closed_at, closed_by_call = s.closed_by_call,
      closed_reason = s.closed_reason
    FROM (
      SELECT o.call_id,
        (SELECT count(*) FROM calls a WHERE a.callback_of = o.call_id) AS attempts,
        (SELECT max(a.arrived_at) FROM calls a WHERE a.callback_of = o.call_id)
          AS last_attempt_at,
        x.operator_answered_at AS closed_at, x.call_id AS closed_by_call,
        CASE WHEN x.call_id IS NULL THEN NULL
             WHEN x.callback_of IS NOT NULL THEN 'called_back' ELSE 'called_again' END
          AS closed_reason
      FROM callbacks o
      LEFT JOIN LATERAL (
        SELECT c.call_id, c.callback_of, c.operator_answered_at FROM calls c
        WHERE c.caller = o.caller AND c.operator_answered_at IS NOT NULL
          AND c.arrived_at > o.arrived_at
        ORDER BY c.operator_answered_at, c.call_id LIMIT 1
      ) x ON true
      WHERE o.call_id = ANY(:entries)
    ) s
    WHERE cb.call_id = s.call_id
      AND (cb.attempts, cb.last_attempt_at, cb.closed_at, cb.closed_by_call, cb.closed_reason)
          IS DISTINCT FROM
          (s.attempts, s.last_attempt_at, s.closed_at, s.closed_by_call, s.closed_reason)
    """
).bindparams(bindparam("entries", type_=ARRAY(TextType)))


async def recompute(tx: Tx, call_ids: Sequence[str], ended: Sequence[str]) -> None:
    """Inside the transaction that stored these calls' events: the entries of those of them
    that have ended (`ended`), then the state (attempts, closed) of the entries these calls can
    change. Only an ended call qualifies, and a call's end never goes away, so a call not
    ended has no entry to make or take off: most batches under load are calls on their way
    to an operator, and skip the statement."""
    if not call_ids:
        return
    if ended:
        await tx.execute(_ENTRIES, {"call_ids": list(ended)})
    # UNION ALL, deduplicated here: UNION's hash, sized for the planner's guess of the
    # branches, took 25 ms of a 27 ms statement for 200 calls.
    entries = {r[0] for r in await tx.fetch(_TODO, {"call_ids": list(call_ids)})}
    if entries:
        await tx.execute(_STATE, {"entries": sorted(entries)})


_LIST = """
    SELECT * FROM callbacks
    WHERE (:status = 'all' OR (:status = 'open') = (closed_at IS NULL))
    ORDER BY ended_at {order} NULLS LAST, call_id LIMIT :limit OFFSET :offset
"""


async def list_callbacks(engine: AsyncEngine, status: str = "open", limit: int = 100,
                         offset: int = 0, oldest_first: bool = False) -> list[Callback]:
    """status: open | closed | all; newest first unless oldest_first."""
    q = text(_LIST.format(order="ASC" if oldest_first else "DESC"))
    async with engine.connect() as conn:
        rows = (await conn.execute(q, {"status": status, "limit": limit, "offset": offset}))
        return [Callback.model_validate(dict(r)) for r in rows.mappings()]


async def get_callback(engine: AsyncEngine, call_id: str) -> Callback | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM callbacks WHERE call_id = :id"),
                                  {"id": call_id})).mappings().first()
    return Callback.model_validate(dict(row)) if row else None


_KPI = text(
    """
    SELECT count(*) AS callbacks,
      count(*) FILTER (WHERE closed_reason = 'called_back'
                       AND closed_at - ended_at <= interval '5 minutes') AS within_5min
    FROM callbacks WHERE arrived_at >= :since AND arrived_at < :until
    """
)


async def callback_kpi(conn: AsyncConnection, since: datetime,
                       until: datetime) -> tuple[int, int]:
    """(entries of calls that arrived in [since, until), of which called back and answered
    within 5 minutes of the call's end)."""
    row = (await conn.execute(_KPI, {"since": since, "until": until})).one()
    return int(row.callbacks), int(row.within_5min)
