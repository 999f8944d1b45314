"""SQLAlchemy Core tables: the schema the migrations in ``migrations/`` build.

``calls`` and ``dispatches`` are derived rows: the writer recomputes them from ``call_events``
(the source of truth), so events may arrive in any order and any number of times.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()


def _ts(name: str, nullable: bool = True, server_default: Any = None) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable, server_default=server_default)


calls = Table(
    "calls",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("caller_raw", Text),
    Column("caller", Text),  # E.164 or NULL (withheld / unparsable)
    Column("line_type", Text),
    Column("trunk", Text),
    _ts("arrived_at"),
    _ts("answered_at"),
    _ts("queued_at"),
    _ts("operator_answered_at"),
    _ts("agency_bridged_at"),  # the first agency joined
    _ts("ended_at"),
    Column("wait_seconds", Float),
    Column("talk_seconds", Float),
    Column("operator", Text),  # the first operator connected
    # Every operator connected, in order (the first again after a requeue)
    Column("operators", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("disposition", Text),  # model.Disposition values
    Column("category", Text),  # "01".."12"
    Column("note", Text),  # the operator's latest NOTE
    Column("agencies", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("priority", Boolean, nullable=False, server_default=text("false")),
    Column("flags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("recording_path", Text),
    Column("recording_seconds", Float),
    Column("location", JSONB),  # the latest LOCATION event with coordinates (its data and at)
    Column("callback_of", Text),  # a callback call: the call it returns (records/callbacks.py)
    _ts("updated_at", nullable=False, server_default=func.now()),
)
Index("ix_calls_arrived_at", calls.c.arrived_at)
Index("ix_calls_caller_arrived_at", calls.c.caller, calls.c.arrived_at)
Index("ix_calls_disposition", calls.c.disposition)
# Calls without an end (open_calls after a restart).
Index("ix_calls_open", calls.c.arrived_at, postgresql_where=calls.c.ended_at.is_(None))
Index("ix_calls_callback_of", calls.c.callback_of,
      postgresql_where=calls.c.callback_of.isnot(None))
# An entry's closing call: a number's calls that reached an operator (records/callbacks.py).
Index("ix_calls_caller_reached", calls.c.caller, calls.c.arrived_at,
      postgresql_where=calls.c.operator_answered_at.isnot(None))

# Citizens to call back, derived from calls (records/callbacks.py); call_id is the call to return.
callbacks = Table(
    "callbacks",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("caller", Text, nullable=False),  # E.164
    Column("caller_raw", Text),
    Column("line_type", Text),
    Column("trunk", Text),  # the trunk the call came in on: the callback goes out on it
    Column("reason", Text, nullable=False),  # abandoned | silent | dropped
    _ts("arrived_at"),
    _ts("ended_at"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    _ts("last_attempt_at"),
    _ts("closed_at"),
    Column("closed_by_call", Text),
    Column("closed_reason", Text),  # called_back | called_again
)
# A records batch finds the entries it can change by these (records/callbacks.py _TODO).
Index("ix_callbacks_caller_closed_at", callbacks.c.caller, callbacks.c.closed_at)
Index("ix_callbacks_closed_by_call", callbacks.c.closed_by_call,
      postgresql_where=callbacks.c.closed_by_call.isnot(None))
Index("ix_callbacks_open", callbacks.c.ended_at, postgresql_where=callbacks.c.closed_at.is_(None))

call_events = Table(
    "call_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("call_id", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", Text, nullable=False),
    _ts("at", nullable=False),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)
Index("ix_call_events_call_seq", call_events.c.call_id, call_events.c.seq)
Index(
    "ix_call_events_dispatch",
    call_events.c.data["dispatch_id"].astext,
    postgresql_where=call_events.c.data["dispatch_id"].astext.isnot(None),
)

dispatches = Table(
    "dispatches",
    metadata,
    Column("dispatch_id", Text, primary_key=True),
    Column("call_id", Text, nullable=False),
    Column("agency", Text),
    Column("line", Text),
    _ts("requested_at"),
    _ts("answered_at"),
    _ts("accepted_at"),
    _ts("moving_at"),
    Column("outcome", Text),  # requested | line_failed | answered | accepted | moving
    _ts("overdue_at"),
)
Index("ix_dispatches_call_id", dispatches.c.call_id)
Index(
    "ix_dispatches_open",
    dispatches.c.requested_at,
    postgresql_where=dispatches.c.moving_at.is_(None),
)

operators = Table(
    "operators",
    metadata,
    Column("operator", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    _ts("updated_at", nullable=False),
)

operator_events = Table(
    "operator_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("operator", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    _ts("at", nullable=False),
)
Index("ix_operator_events_operator_at", operator_events.c.operator, operator_events.c.at)

blocklist = Table(
    "blocklist",
    metadata,
    Column("number", Text, primary_key=True),
    _ts("blocked_until"),  # NULL: no expiry
    Column("reason", Text, nullable=False),
    Column("by", Text, nullable=False),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("expired_at"),  # set when the block ended (expiry or unblock)
)

block_audit = Table(
    "block_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", Text, nullable=False),
    Column("action", Text, nullable=False),  # block | expire | manual_block | unblock | refer
    Column("by", Text, nullable=False),
    Column("reason", Text),
    _ts("at", nullable=False, server_default=func.now()),
)
Index("ix_block_audit_number_at", block_audit.c.number, block_audit.c.at)

referrals = Table(
    "referrals",
    metadata,
    Column("number", Text, primary_key=True),
    Column("count", Integer, nullable=False),
    _ts("first_at", nullable=False),
    _ts("last_at", nullable=False),
    _ts("referred_at", nullable=False, server_default=func.now()),
    _ts("exported_at"),
)

# Citizens' complaints: the centre answers each within complaint_deadline_hours (3x24 h).
complaints = Table(
    "complaints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", Text),  # the call complained about, when there is one
    Column("caller", Text, nullable=False),  # who complains: a number or a name
    Column("text", Text, nullable=False),
    _ts("filed_at", nullable=False, server_default=func.now()),
    Column("by", Text, nullable=False),  # who took the complaint down
    _ts("answered_at"),
    Column("answer", Text),
    Column("answered_by", Text),
    _ts("overdue_at"),  # set once, when the deadline passed unanswered
)
Index("ix_complaints_call_id", complaints.c.call_id)
Index(
    "ix_complaints_open",
    complaints.c.filed_at,
    postgresql_where=complaints.c.answered_at.is_(None),
)

# The agency directory as settings last gave it (records/agencies.py syncs it at start). An
# agency dropped from settings stays, inactive, so that old dispatches still name it.
agencies = Table(
    "agencies",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),  # agencies.Scope values
    Column("lines", ARRAY(Text), nullable=False),  # dial strings: duty line, then fallbacks
    Column("categories", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _ts("updated_at", nullable=False, server_default=func.now()),
)

# High availability (siaga112/leadership.py, docs/cluster.md): one row, the active daemon's name,
# the epoch of its leadership and a heartbeat counter it raises every beat. Standbys watch the
# counter with their own clock, never the row's timestamps.
ha_leader = Table(
    "ha_leader",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("holder", Text),  # NULL: nobody leads (released on a graceful stop)
    Column("epoch", BigInteger, nullable=False, server_default=text("0")),
    Column("beat", BigInteger, nullable=False, server_default=text("0")),
    _ts("since"),
    _ts("heartbeat_at"),
)

# What each operator chose (available, paused, logged out; why) and since when they are idle:
# shared by every daemon and every PBX node, kept across PBX restarts (operators.py's store).
operator_choices = Table(
    "operator_choices",
    metadata,
    Column("operator", Text, primary_key=True),
    Column("chosen", Text, nullable=False),
    Column("reason", Text),
    _ts("idle_since"),
    _ts("updated_at", nullable=False, server_default=func.now()),
)
