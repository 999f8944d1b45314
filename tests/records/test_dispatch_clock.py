"""The 15-minute clock on dispatches and the 3x24-hour clock on complaints, on the real
repository; OVERDUE events go to a list sink and are stored as the writer would store them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from siaga112.dispatch_clock import DispatchClock
from siaga112.model import CallEvent, CallEventType, utcnow
from siaga112.records.apply import store
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.settings import AgencySettings
from tests.fakes import ListSink

from .factory import call_events

SETTINGS = AgencySettings.model_validate(
    {"moving_deadline_minutes": 15, "complaint_deadline_hours": 72}
)


Put = Callable[[list[CallEvent]], Awaitable[object]]


@pytest.fixture
def repo(policy: BlockPolicy, clean: AsyncEngine) -> Repository:
    return Repository(clean, policy)


@pytest.fixture
def put(policy: BlockPolicy, clean: AsyncEngine) -> Put:
    """Stores events as the writer does."""
    return lambda evs: store(clean, policy, evs)


async def _call_with_dispatch(put: Put, call_id: str, minutes_ago: float) -> str:
    """A call whose police dispatch was requested (and accepted) minutes_ago; its dispatch id."""
    start = utcnow() - timedelta(minutes=minutes_ago, seconds=10)  # requested 10 s in
    await put(call_events(call_id, start=start, agency="police"))
    return f"{call_id}-police"


def _team_moving(call_id: str, dispatch_id: str) -> CallEvent:
    """As app.Daemon.team_moving emits it: seq 0, from outside the call's session."""
    return CallEvent(
        call_id=call_id,
        seq=0,
        type=CallEventType.TEAM_MOVING,
        data={"agency": "police", "dispatch_id": dispatch_id, "by": "mqtt"},
    )


async def test_old_dispatch_without_moving_is_overdue_until_reported(
    repo: Repository, put: Put
) -> None:
    old = await _call_with_dispatch(put, "old", minutes_ago=60)
    await _call_with_dispatch(put, "new", minutes_ago=1)
    deadline = utcnow() - timedelta(minutes=15)

    [row] = await repo.overdue_dispatches(deadline)
    assert (row.dispatch_id, row.call_id, row.agency) == (old, "old", "police")
    assert row.accepted_at is not None and row.requested_at < deadline

    overdue = CallEvent(
        call_id="old",
        seq=0,
        type=CallEventType.OVERDUE,
        data={"agency": "police", "dispatch_id": old, "kind": "moving"},
    )
    await put([overdue])
    assert await repo.overdue_dispatches(deadline) == []
    [d] = (await repo.get_call("old")).dispatches  # type: ignore[union-attr]
    assert d.overdue_at == overdue.at and d.outcome == "accepted"


async def test_team_moving_with_seq_0_stops_the_clock(repo: Repository, put: Put) -> None:
    did = await _call_with_dispatch(put, "c1", minutes_ago=60)
    moving = _team_moving("c1", did)
    await put([moving])

    assert await repo.overdue_dispatches(utcnow()) == []
    [d] = (await repo.get_call("c1")).dispatches  # type: ignore[union-attr]
    assert (d.moving_at, d.outcome, d.agency, d.line) == (moving.at, "moving", "police", "l1")


async def test_team_moving_before_the_request_is_stored_still_counts(
    repo: Repository, put: Put
) -> None:
    """The writer may store an MQTT team-moving before the call's own events: same row."""
    did = "c2-police"
    moving = _team_moving("c2", did)
    await put([moving])
    await _call_with_dispatch(put, "c2", minutes_ago=60)

    assert await repo.overdue_dispatches(utcnow()) == []
    [d] = (await repo.get_call("c2")).dispatches  # type: ignore[union-attr]
    assert (d.dispatch_id, d.moving_at, d.outcome) == (did, moving.at, "moving")


async def test_a_dispatch_stays_with_the_call_that_requested_it(repo: Repository, put: Put) -> None:
    """A team-moving naming another call id (a confused agency) does not move the dispatch."""
    did = await _call_with_dispatch(put, "c3", minutes_ago=60)
    await put([_team_moving("a-call-that-sorts-first", did)])
    [d] = (await repo.get_call("c3")).dispatches  # type: ignore[union-attr]
    assert (d.call_id, d.outcome) == ("c3", "moving")


async def test_clock_reports_an_overdue_dispatch_once(repo: Repository, put: Put) -> None:
    did = await _call_with_dispatch(put, "late", minutes_ago=16)
    await _call_with_dispatch(put, "early", minutes_ago=14)
    sink = ListSink()
    clock = DispatchClock(repo, sink, SETTINGS)

    with capture_logs() as logs:
        assert await clock.check() == 1
    [ev] = sink.calls
    assert (ev.call_id, ev.type) == ("late", CallEventType.OVERDUE)
    assert ev.data == {
        "agency": "police",
        "dispatch_id": did,
        "kind": "moving",
        "deadline_minutes": 15,
    }
    assert [entry["event"] for entry in logs] == ["dispatch_overdue"]

    assert await clock.check() == 0  # not stored yet: the clock remembers it
    await put(sink.calls)
    assert await clock.check() == 0
    assert await DispatchClock(repo, ListSink(), SETTINGS).check() == 0  # after a restart too
    assert len(sink.calls) == 1


async def test_clock_reports_an_overdue_complaint_once_and_marks_it(
    repo: Repository, put: Put
) -> None:
    await put(call_events("c9"))
    long_ago = utcnow() - timedelta(hours=73)
    on_call = await repo.file_complaint(
        "+6281111", "slow", by="sup1", call_id="c9", filed_at=long_ago
    )
    no_call = await repo.file_complaint("Ibu Sari", "rude", by="sup1", filed_at=long_ago)
    answered = await repo.file_complaint("+6282222", "lost", by="sup1", filed_at=long_ago)
    await repo.answer_complaint(answered.id, "found it", by="sup2")
    await repo.file_complaint("+6283333", "recent", by="sup1")
    sink = ListSink()
    clock = DispatchClock(repo, sink, SETTINGS)

    with capture_logs() as logs:
        assert await clock.check() == 2
    assert [(e["event"], e["complaint_id"]) for e in logs] == [
        ("complaint_overdue", on_call.id),
        ("complaint_overdue", no_call.id),
    ]
    [ev] = sink.calls  # only the complaint that names a call has an event
    assert (ev.call_id, ev.type, ev.data["kind"], ev.data["complaint_id"]) == (
        "c9",
        CallEventType.OVERDUE,
        "complaint",
        on_call.id,
    )
    marked = {c.id: c.overdue_at for c in await repo.list_complaints()}
    assert marked[on_call.id] and marked[no_call.id] and not marked[answered.id]
    assert await DispatchClock(repo, sink, SETTINGS).check() == 0

    await put(sink.calls)  # a complaint's OVERDUE touches no dispatch
    assert (await repo.get_call("c9")).dispatches == []  # type: ignore[union-attr]
