"""Turn events into rows, idempotently and in any order.

Events are inserted by event_id (ON CONFLICT DO NOTHING); the ``calls`` and ``dispatches``
rows they touch are then recomputed from all of the call's stored events, so a late, repeated
or replayed event gives the same row as one on time. Rules per event type (model.CallEventType):
first ARRIVED / ANSWERED / QUEUED / CONNECTED / AGENCY_JOINED / ENDED times win; the operator
is the first CONNECTED's, the operators every CONNECTED's in order (a citizen requeued after
their operator's phone died is connected again); agencies are every AGENCY_JOINED's; the
latest (by seq, then time) CATEGORY and RECORDING win, and the latest NOTE (by time: notes
come from outside the session, seq 0); disposition is the latest DISPOSITION (the operator's
mark), else ENDED's. The latest LOCATION with coordinates (by time) is the record's location;
ARRIVED's callback_of marks a callback call (records/callbacks.py derives the callback list
in the same transaction).

A dispatch is every event with its data.dispatch_id (the agency bridge tags them all): its
times are the first of each type regardless of seq, so TEAM_MOVING (seq 0, from outside the
call's session) sets moving_at and the dispatch clock's OVERDUE (seq 0) sets overdue_at; its
call is the AGENCY_REQUESTED event's, whatever call id a later event names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json
from sqlalchemy import BindParameter, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import DateTime, Integer, Text

from siaga112.model import CallEvent, CallEventType, Disposition, OperatorEvent
from siaga112.records import callbacks
from siaga112.records.driver import Tx, transaction
from siaga112.records.policy import BlockPolicy

INSERT_SLICE = 50  # call events a statement inserts
_POLICED = {Disposition.PRANK.value, Disposition.GHOST.value}
_DISPATCH_TYPES = {
    CallEventType.AGENCY_REQUESTED,
    CallEventType.AGENCY_LINE_FAILED,
    CallEventType.AGENCY_JOINED,
    CallEventType.AGENCY_ACCEPTED,
    CallEventType.TEAM_MOVING,
    CallEventType.OVERDUE,
}


_RECOMPUTE_CALLS = text(
    """
    WITH agg AS (
      SELECT e.call_id,
        (array_agg(e.data->>'caller_raw' ORDER BY e.at, e.seq)
           FILTER (WHERE e.type = 'arrived'))[1] AS caller_raw,
        (array_agg(e.data->>'caller' ORDER BY e.at, e.seq)
           FILTER (WHERE e.type = 'arrived'))[1] AS caller,
        (array_agg(e.data->>'line_type' ORDER BY e.at, e.seq)
           FILTER (WHERE e.type = 'arrived'))[1] AS line_type,
        (array_agg(e.data->>'trunk' ORDER BY e.at, e.seq)
           FILTER (WHERE e.type = 'arrived'))[1] AS trunk,
        min(e.at) FILTER (WHERE e.type = 'arrived') AS arrived_at,
        min(e.at) FILTER (WHERE e.type = 'answered') AS answered_at,
        min(e.at) FILTER (WHERE e.type = 'queued') AS queued_at,
        min(e.at) FILTER (WHERE e.type = 'connected') AS operator_answered_at,
        coalesce(array_agg(e.data->>'operator' ORDER BY e.at, e.seq)
                 FILTER (WHERE e.type = 'connected'), '{}') AS operators,
        min(e.at) FILTER (WHERE e.type = 'agency_joined') AS agency_bridged_at,
        min(e.at) FILTER (WHERE e.type = 'ended') AS ended_at,
        (array_agg(e.data->>'disposition' ORDER BY e.seq DESC, e.at DESC)
           FILTER (WHERE e.type = 'disposition'))[1] AS marked,
        (array_agg(e.data->>'disposition' ORDER BY e.seq DESC, e.at DESC)
           FILTER (WHERE e.type = 'ended'))[1] AS ended_disposition,
        (array_agg(e.data->>'category' ORDER BY e.seq DESC, e.at DESC)
           FILTER (WHERE e.type = 'category'))[1] AS category,
        (array_agg(e.data || jsonb_build_object('at', e.at) ORDER BY e.at DESC, e.seq DESC)
           FILTER (WHERE e.type = 'location' AND e.data ? 'lat'))[1] AS location,
        (array_agg(e.data->>'callback_of' ORDER BY e.at, e.seq)
           FILTER (WHERE e.type = 'arrived'))[1] AS callback_of,
        (array_agg(e.data->>'text' ORDER BY e.at DESC, e.seq DESC)
           FILTER (WHERE e.type = 'note'))[1] AS note,
        coalesce(array_agg(DISTINCT e.data->>'agency')
                 FILTER (WHERE e.type = 'agency_joined' AND e.data ? 'agency'), '{}') AS agencies,
        coalesce(bool_or(e.data->'priority' = 'true'::jsonb)
                 FILTER (WHERE e.type = 'queued'), false) AS priority,
        bool_or(e.type = 'bypass') AS bypass,
        bool_or(e.type = 'silent_emergency') AS silent,
        (array_agg(e.data->>'path' ORDER BY e.seq DESC, e.at DESC)
           FILTER (WHERE e.type = 'recording'))[1] AS recording_path,
        (array_agg(CASE WHEN jsonb_typeof(e.data->'seconds') = 'number'
                            THEN (e.data->>'seconds')::float8 END ORDER BY e.seq DESC, e.at DESC)
           FILTER (WHERE e.type = 'recording'))[1] AS recording_seconds
      FROM call_events e
      WHERE e.call_id = ANY(:call_ids)
      GROUP BY e.call_id
    )
    INSERT INTO calls AS c (
      call_id, caller_raw, caller, line_type, trunk, arrived_at, answered_at, queued_at,
      operator_answered_at, operator, operators, agency_bridged_at, ended_at, disposition,
      category, note, agencies, priority, flags, recording_path, recording_seconds, wait_seconds,
      talk_seconds, location, callback_of, updated_at)
    SELECT a.call_id, a.caller_raw, a.caller, a.line_type, a.trunk, a.arrived_at, a.answered_at,
      a.queued_at, a.operator_answered_at, a.operators[1], a.operators, a.agency_bridged_at,
      a.ended_at,
      coalesce(a.marked, a.ended_disposition), a.category, a.note, a.agencies, a.priority,
      ARRAY(SELECT DISTINCT f FROM unnest(
          ARRAY(SELECT jsonb_array_elements_text(q.data->'flags') FROM call_events q
                WHERE q.call_id = a.call_id AND q.type = 'queued'
                  AND jsonb_typeof(q.data->'flags') = 'array')
          || CASE WHEN a.bypass THEN ARRAY['blocked_bypass'] ELSE '{}'::text[] END
          || CASE WHEN a.silent THEN ARRAY['silent_emergency'] ELSE '{}'::text[] END) AS f
        ORDER BY f),
      a.recording_path, a.recording_seconds,
      extract(epoch FROM coalesce(a.operator_answered_at, a.ended_at) - a.arrived_at)::float8,
      extract(epoch FROM a.ended_at - a.operator_answered_at)::float8,
      a.location, a.callback_of, now()
    FROM agg a
    ON CONFLICT (call_id) DO UPDATE SET
      caller_raw = excluded.caller_raw, caller = excluded.caller, line_type = excluded.line_type,
      trunk = excluded.trunk, arrived_at = excluded.arrived_at, answered_at = excluded.answered_at,
      queued_at = excluded.queued_at, operator_answered_at = excluded.operator_answered_at,
      operator = excluded.operator, operators = excluded.operators,
      agency_bridged_at = excluded.agency_bridged_at,
      ended_at = excluded.ended_at, disposition = excluded.disposition,
      category = excluded.category, note = excluded.note, agencies = excluded.agencies,
      priority = excluded.priority,
      flags = excluded.flags, recording_path = excluded.recording_path,
      recording_seconds = excluded.recording_seconds, wait_seconds = excluded.wait_seconds,
      talk_seconds = excluded.talk_seconds, location = excluded.location,
      callback_of = excluded.callback_of, updated_at = excluded.updated_at
    RETURNING c.call_id, c.caller, c.disposition, c.ended_at IS NOT NULL AS ended
    """
).bindparams(bindparam("call_ids", type_=ARRAY(Text)))

_RECOMPUTE_DISPATCHES = text(
    """
    INSERT INTO dispatches AS d (dispatch_id, call_id, agency, line, requested_at, answered_at,
                                 accepted_at, moving_at, overdue_at, outcome)
    SELECT s.dispatch_id, s.call_id, s.agency, s.line, s.requested_at, s.answered_at,
      s.accepted_at, s.moving_at, s.overdue_at,
      CASE WHEN s.moving_at IS NOT NULL THEN 'moving'
           WHEN s.accepted_at IS NOT NULL THEN 'accepted'
           WHEN s.answered_at IS NOT NULL THEN 'answered'
           WHEN s.line_failed THEN 'line_failed'
           ELSE 'requested' END
    FROM (
      SELECT e.data->>'dispatch_id' AS dispatch_id,
        coalesce((array_agg(e.call_id ORDER BY e.at, e.seq)
                    FILTER (WHERE e.type = 'agency_requested'))[1], min(e.call_id)) AS call_id,
        (array_agg(e.data->>'agency' ORDER BY e.at, e.seq)
           FILTER (WHERE e.data ? 'agency'))[1] AS agency,
        (array_agg(e.data->>'line' ORDER BY e.seq DESC, e.at DESC)
           FILTER (WHERE e.type = 'agency_joined'))[1] AS line,
        min(e.at) FILTER (WHERE e.type = 'agency_requested') AS requested_at,
        min(e.at) FILTER (WHERE e.type = 'agency_joined') AS answered_at,
        min(e.at) FILTER (WHERE e.type = 'agency_accepted') AS accepted_at,
        min(e.at) FILTER (WHERE e.type = 'team_moving') AS moving_at,
        min(e.at) FILTER (WHERE e.type = 'overdue') AS overdue_at,
        coalesce(bool_or(e.type = 'agency_line_failed'), false) AS line_failed
      FROM call_events e
      WHERE e.data->>'dispatch_id' = ANY(:dispatch_ids)
      GROUP BY 1
    ) s
    ON CONFLICT (dispatch_id) DO UPDATE SET
      call_id = excluded.call_id, agency = excluded.agency, line = excluded.line,
      requested_at = excluded.requested_at, answered_at = excluded.answered_at,
      accepted_at = excluded.accepted_at, moving_at = excluded.moving_at,
      overdue_at = excluded.overdue_at, outcome = excluded.outcome
    """
).bindparams(bindparam("dispatch_ids", type_=ARRAY(Text)))


@dataclass(frozen=True)
class Applied:
    call_ids: set[str]
    police: set[str]  # callers whose calls this batch marked prank or ghost


async def apply_batch(
    tx: Tx,
    call_evs: Sequence[CallEvent],
    operator_evs: Sequence[OperatorEvent] = (),
) -> Applied:
    """Store the events and recompute the rows they touch, inside tx's transaction."""
    unique_calls = list({ev.event_id: ev for ev in call_evs}.values())
    call_ids: set[str] = set()
    police: set[str] = set()
    if unique_calls:
        # In slices, each its own round trip: between them the loop takes in the calls that
        # arrived (one statement of a full batch held it for up to 28 ms at 180 calls/s).
        for start in range(0, len(unique_calls), INSERT_SLICE):
            evs = unique_calls[start:start + INSERT_SLICE]
            await tx.execute(_INSERT_CALL_EVENTS, {
                "event_ids": [ev.event_id for ev in evs],
                "call_ids": [ev.call_id for ev in evs],
                "seqs": [ev.seq for ev in evs],
                "types": [ev.type.value for ev in evs],
                "ats": [ev.at for ev in evs],
                "datas": [to_json(ev.data).decode() for ev in evs],
            })
        call_ids = {ev.call_id for ev in unique_calls}
        marking = {
            ev.call_id
            for ev in unique_calls
            if ev.type in (CallEventType.DISPOSITION, CallEventType.ENDED)
        }
        rows = await tx.fetch(_RECOMPUTE_CALLS, {"call_ids": sorted(call_ids)})
        # The callback list is derived with the calls (records/callbacks.py): never lost.
        await callbacks.recompute(tx, sorted(call_ids),
                                  ended=sorted(r["call_id"] for r in rows if r["ended"]))
        police = {
            r["caller"]
            for r in rows
            if r["call_id"] in marking and r["caller"] and r["disposition"] in _POLICED
        }
        dispatch_ids = sorted(
            {
                str(ev.data["dispatch_id"])
                for ev in unique_calls
                if ev.type in _DISPATCH_TYPES and ev.data.get("dispatch_id")
            }
        )
        if dispatch_ids:
            await tx.execute(_RECOMPUTE_DISPATCHES, {"dispatch_ids": dispatch_ids})
    if operator_evs:
        await _apply_operator_events(tx, operator_evs)
    return Applied(call_ids, police)


async def _apply_operator_events(tx: Tx, evs: Sequence[OperatorEvent]) -> None:
    unique = list({ev.event_id: ev for ev in evs}.values())
    latest: dict[str, OperatorEvent] = {}
    for ev in unique:
        if ev.operator not in latest or ev.at >= latest[ev.operator].at:
            latest[ev.operator] = ev
    await tx.execute(_STORE_OPERATOR_EVENTS, {
        "event_ids": [ev.event_id for ev in unique],
        "operators": [ev.operator for ev in unique],
        "states": [ev.state.value for ev in unique],
        "reasons": [ev.reason for ev in unique],
        "ats": [ev.at for ev in unique],
        "latest_operators": list(latest),
        "latest_states": [ev.state.value for ev in latest.values()],
        "latest_reasons": [ev.reason for ev in latest.values()],
        "latest_ats": [ev.at for ev in latest.values()],
    })


_TIMESTAMPTZ = DateTime(timezone=True)
_UUID = UUID(as_uuid=True)


def _arrays(**types: Any) -> list[BindParameter[Any]]:
    """Each parameter an array of its column's type: a statement's rows, column by column."""
    return [bindparam(name, type_=ARRAY(t)) for name, t in types.items()]


# The rows go as arrays, one statement and one round trip for a slice (unnest), with every
# value a parameter; the data as JSON text, made jsonb by the server.
_INSERT_CALL_EVENTS = text(
    """
    INSERT INTO call_events (event_id, call_id, seq, type, at, data)
    SELECT e.event_id, e.call_id, e.seq, e.type, e.at, e.data::jsonb
    FROM unnest(:event_ids, :call_ids, :seqs, :types, :ats, :datas)
      AS e(event_id, call_id, seq, type, at, data)
    ON CONFLICT (event_id) DO NOTHING
    """
).bindparams(*_arrays(event_ids=_UUID, call_ids=Text, seqs=Integer, types=Text,
                      ats=_TIMESTAMPTZ, datas=Text))

# The operators' events and each operator's row in one statement (one round trip): the row
# takes the latest state, and an older one stored late never overwrites it.
_STORE_OPERATOR_EVENTS = text(
    """
    WITH events AS (
      INSERT INTO operator_events (event_id, operator, state, reason, at)
      SELECT * FROM unnest(:event_ids, :operators, :states, :reasons, :ats)
      ON CONFLICT (event_id) DO NOTHING
    )
    INSERT INTO operators AS o (operator, state, reason, updated_at)
    SELECT * FROM unnest(:latest_operators, :latest_states, :latest_reasons, :latest_ats)
    ON CONFLICT (operator) DO UPDATE SET
      state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at
    WHERE o.updated_at <= excluded.updated_at
    """
).bindparams(*_arrays(event_ids=_UUID, operators=Text, states=Text, reasons=Text,
                      ats=_TIMESTAMPTZ, latest_operators=Text, latest_states=Text,
                      latest_reasons=Text, latest_ats=_TIMESTAMPTZ))


async def store(
    engine: AsyncEngine,
    policy: BlockPolicy,
    call_evs: Sequence[CallEvent],
    operator_evs: Sequence[OperatorEvent] = (),
) -> Applied:
    """One transaction: the events, the rows they touch, the policy on what they marked."""
    async with transaction(engine) as tx:
        applied = await apply_batch(tx, call_evs, operator_evs)
        changed = await policy.evaluate(tx, applied.police) if applied.police else False
    if changed:
        policy.notify()
    return applied
