"""Operators' chosen states in PostgreSQL (table operator_choices): what each operator chose
(available, paused, logged out; why) and since when they are idle.

One place for every daemon and every PBX node of a centre, kept across PBX restarts and across a
takeover by the standby (docs/cluster.md). The desk (operators.py) keeps its own copy in memory
and goes on with it while PostgreSQL is away; what changes meanwhile waits here, latest per
operator, and is written when PostgreSQL is back (`run`). A load while changes wait keeps them:
what the desk did last wins over what the database still says.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import CHOSEN_STATES, OperatorState
from siaga112.records.tables import operator_choices

log = structlog.get_logger(__name__)

LOAD_TIMEOUT = 3.0  # a resync waits no longer for the database: the desk keeps what it has


@dataclass(frozen=True)
class Choice:
    operator: str
    chosen: OperatorState
    reason: str | None
    idle_since: datetime | None
    at: datetime  # when the desk changed it (the newest wins)


class MemoryChoices:
    """No database: a desk whose choices live as long as the process (unit tests)."""

    async def load(self) -> dict[str, Choice] | None:
        return None

    def save(self, choice: Choice, urgent: bool = True) -> None:
        pass


# Built once and run with a list of rows, so SQLAlchemy compiles it once (a .values([...])
# statement is compiled anew for every write: 1.2 ms of CPU per write, one write per call's end).
_row = insert(operator_choices)
_UPSERT = _row.on_conflict_do_update(
    index_elements=["operator"],
    set_={"chosen": _row.excluded.chosen, "reason": _row.excluded.reason,
          "idle_since": _row.excluded.idle_since, "updated_at": _row.excluded.updated_at},
    # Two daemons' desks (the old leader's last write, late): the newest wins.
    where=operator_choices.c.updated_at <= _row.excluded.updated_at,
)


# How long an operator's new idle-since alone may wait for the write. Every call's end gives
# its operator one: written each time, they were a transaction every 0.2 s at 10 calls/s. A
# crash loses at most this much of them (the desk's fairness order after a restart), never a
# choice (a pause, a log-out), which is written within `gather`.
IDLE_SINCE_DELAY = 5.0


class ChoiceStore:
    def __init__(self, engine: AsyncEngine, retry_interval: float, gather: float = 0.0,
                 idle_delay: float = IDLE_SINCE_DELAY) -> None:
        """gather: seconds a change waits for others before the write (under load one write
        carries many); idle_delay: the same for a change of idle-since alone."""
        self._engine = engine
        self._retry = retry_interval
        self._gather = gather
        self._idle_delay = idle_delay
        self._pending: dict[str, Choice] = {}
        self._wake = asyncio.Event()
        self._later: asyncio.TimerHandle | None = None  # the wake for idle-since changes

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def load(self) -> dict[str, Choice] | None:
        """Every operator's row, with the changes not yet written on top; None when the
        database cannot say (the desk keeps what it has)."""
        try:
            async with asyncio.timeout(LOAD_TIMEOUT), self._engine.connect() as conn:
                rows = (await conn.execute(select(operator_choices))).all()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("operator_choices_unreadable", error=repr(exc)[:200],
                        pending=len(self._pending))
            return None
        found: dict[str, Choice] = {}
        for row in rows:
            if row.chosen not in {s.value for s in CHOSEN_STATES}:
                log.warning("operator_choice_refused", operator=row.operator, chosen=row.chosen)
                continue
            found[row.operator] = Choice(row.operator, OperatorState(row.chosen), row.reason,
                                         row.idle_since, row.updated_at)
        found.update(self._pending)
        return found

    def save(self, choice: Choice, urgent: bool = True) -> None:
        """Written by `run`, soon; the latest per operator (never blocks the call path).
        Not urgent (idle-since alone): within idle_delay, or with the next urgent write."""
        self._pending[choice.operator] = choice
        if urgent:
            self._wake.set()
        elif self._later is None and not self._wake.is_set():
            self._later = asyncio.get_running_loop().call_later(self._idle_delay,
                                                                self._wake.set)

    async def run(self) -> None:
        """Write what waits; while the database is away, try again every retry_interval."""
        while True:
            await self._wake.wait()
            if self._gather > 0:
                await asyncio.sleep(self._gather)
            self._wake.clear()
            if self._later is not None:  # what waits goes now
                self._later.cancel()
                self._later = None
            while self._pending:
                batch = dict(self._pending)
                try:
                    await self._write(list(batch.values()))
                except (SQLAlchemyError, OSError, TimeoutError) as exc:
                    log.warning("operator_choices_not_saved", error=repr(exc)[:200],
                                pending=len(self._pending), retry_in=self._retry)
                    await asyncio.sleep(self._retry)
                    continue
                for name, choice in batch.items():
                    if self._pending.get(name) is choice:  # not changed again meanwhile
                        del self._pending[name]
                log.info("operator_choices_saved", operators=sorted(batch))

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109 (bounded shutdown)
        """At a stop: one last try for what waits (what fails is said, with the names)."""
        if not self._pending:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._write(list(self._pending.values()))
            self._pending.clear()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.error("operator_choices_lost_at_stop", operators=sorted(self._pending),
                      error=repr(exc)[:200])

    async def _write(self, choices: list[Choice]) -> None:
        rows = [{"operator": c.operator, "chosen": c.chosen.value, "reason": c.reason,
                 "idle_since": c.idle_since, "updated_at": c.at} for c in choices]
        async with self._engine.begin() as conn:
            await conn.execute(_UPSERT, rows)
