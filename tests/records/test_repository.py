from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import CallEvent, CallEventType, Disposition, utcnow
from siaga112.records.apply import store
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository

from .factory import call_events


@pytest.fixture
async def known(policy: BlockPolicy, clean: AsyncEngine) -> Repository:
    """Ten calls an hour ago: waits 2,4,..,16 s for eight answered (op1 x5, op2 x3),
    one prank (op2), one ghost (op1), two abandoned, one police dispatch."""
    t0 = utcnow() - timedelta(hours=1)
    evs = []
    for i in range(8):
        op = "op1" if i < 5 else "op2"
        disp = {3: Disposition.GHOST, 7: Disposition.PRANK}.get(i, Disposition.GENUINE)
        evs += call_events(
            f"k{i}",
            caller=f"+62811000000{i}",
            start=t0 + timedelta(minutes=i),
            wait=2.0 * (i + 1),
            talk=20.0,
            operator=op,
            disposition=disp,
            agency="police" if i == 0 else None,
        )
    for i in range(2):
        evs += call_events(
            f"a{i}",
            start=t0 + timedelta(minutes=20 + i),
            wait=30.0,
            operator=None,
            disposition=Disposition.ABANDONED,
        )
    await store(clean, policy, evs)
    return Repository(clean, policy)


async def test_kpis_on_a_known_set(known: Repository):
    now = utcnow()
    k = await known.kpis(now - timedelta(days=1), now)
    assert (k.calls, k.offered, k.answered) == (10, 10, 8)
    assert k.answered_within_10s_pct == 50.0  # waits 2, 4, 6, 8, 10 of 10 offered
    assert k.mean_wait_seconds == pytest.approx(9.0)
    assert k.p90_wait_seconds == pytest.approx(14.6)  # percentile_cont over 2..16
    assert k.abandoned_pct == 20.0
    assert (k.prank_pct, k.ghost_pct) == (10.0, 10.0)
    ops = {o.operator: o for o in k.per_operator}
    assert (ops["op1"].calls, ops["op1"].ghost, ops["op2"].calls, ops["op2"].prank) == (5, 1, 3, 1)
    assert ops["op1"].mean_talk_seconds == pytest.approx(20.0)
    [police] = k.per_agency
    assert (police.agency, police.dispatches, police.overdue) == ("police", 1, 0)
    assert police.mean_accept_seconds == pytest.approx(3.0)


async def test_kpis_of_an_empty_range_have_no_percentages(known: Repository):
    now = utcnow()
    k = await known.kpis(now + timedelta(days=1), now + timedelta(days=2))
    assert k.calls == 0 and k.answered_within_10s_pct is None and k.per_operator == []


async def test_list_calls_filters(known: Repository):
    assert len(await known.list_calls()) == 10
    assert {c.call_id for c in await known.list_calls(operator="op2")} == {"k5", "k6", "k7"}
    assert [c.call_id for c in await known.list_calls(disposition="abandoned", limit=1)] == ["a1"]
    assert [c.call_id for c in await known.list_calls(caller="+628110000003")] == ["k3"]
    with pytest.raises(ValueError):
        await known.list_calls(disposition="nonsense")


async def test_get_call_has_events_and_dispatches(known: Repository):
    detail = await known.get_call("k0")
    assert detail is not None
    assert [e.seq for e in detail.events] == sorted(e.seq for e in detail.events)
    assert [d.agency for d in detail.dispatches] == ["police"]
    assert await known.get_call("nope") is None


async def test_mark_call_refuses_unknown_call_and_bad_category(known: Repository):
    with pytest.raises(ValueError, match="no call"):
        await known.mark_call("nope", by="sup1", disposition="prank")
    with pytest.raises(ValueError, match="category"):
        await known.mark_call("k0", by="sup1", category="13")


async def test_open_calls_are_those_arrived_before_and_never_ended(
    known: Repository, policy: BlockPolicy, clean: AsyncEngine
):
    t0 = utcnow() - timedelta(minutes=30)
    for call_id, minutes in (("open-old", 0), ("open-older", -5), ("open-new", 29)):
        arrived = [
            e
            for e in call_events(call_id, start=t0 + timedelta(minutes=minutes))
            if e.type is not CallEventType.ENDED
        ]
        await store(clean, policy, arrived)
    # An ENDED stored without its ARRIVED (journal order) is not an open call either.
    [ended_only] = [e for e in call_events("ended-only") if e.type is CallEventType.ENDED]
    await store(clean, policy, [ended_only])

    cutoff = utcnow() - timedelta(minutes=10)
    assert await known.open_calls(older_than=cutoff) == ["open-older", "open-old"]
    assert await known.open_calls(older_than=utcnow() + timedelta(minutes=1)) == [
        "open-older",
        "open-old",
        "open-new",
    ]


async def test_a_requeued_call_names_every_operator_it_was_connected_to(
    policy: BlockPolicy, clean: AsyncEngine
):
    """op6's desk phone died in the call: the citizen went back to the queue and op1 took
    them. The record's operator is the first (op6), its operators both in order; each one's
    list of calls has it. Stored in two batches, the later CONNECTED first: the order is by
    time, whatever the order of arrival."""
    t0 = utcnow() - timedelta(minutes=5)
    evs = call_events("rq", start=t0, wait=3.0, talk=40.0, operator="op6")
    again = [
        CallEvent(call_id="rq", seq=90, type=CallEventType.OPERATOR_LEFT,
                     at=t0 + timedelta(seconds=20), data={"operator": "op6", "phone_lost": True}),
        CallEvent(call_id="rq", seq=91, type=CallEventType.REQUEUED,
                     at=t0 + timedelta(seconds=20.1), data={"reason": "operator_phone_lost"}),
        CallEvent(call_id="rq", seq=92, type=CallEventType.CONNECTED,
                     at=t0 + timedelta(seconds=24), data={"operator": "op1"}),
    ]
    await store(clean, policy, again)
    await store(clean, policy, evs)
    repo = Repository(clean, policy)
    detail = await repo.get_call("rq")
    assert detail is not None
    assert (detail.call.operator, detail.call.operators) == ("op6", ["op6", "op1"])
    for op in ("op6", "op1"):
        assert [c.call_id for c in await repo.list_calls(operator=op)] == ["rq"]
    assert await repo.list_calls(operator="op2") == []
    # A call never connected has none.
    await store(clean, policy, call_events("ab", start=t0, operator=None,
                                           disposition=Disposition.ABANDONED))
    ab = await repo.get_call("ab")
    assert ab is not None and (ab.call.operator, ab.call.operators) == (None, [])
