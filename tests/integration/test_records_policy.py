"""Records, the prank and ghost-call policy, the silent-call check and recordings, end to end:
SIPp citizens and desk phones through the real test PBX, the daemon over ARI, records in the
real PostgreSQL (issue 4)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from siaga112.model import CallState, Disposition, OperatorState
from siaga112.records.schemas import CallDetail
from tests.conftest import REPO, wait_for
from tests.integration.phones import MOBILE, e164, mobile_number
from tests.integration.test_call_path import call_of, record

pytestmark = pytest.mark.integration

QUICK = {"queue": {"ring_timeout": 4, "wrapup": 0, "announce_interval": 30}}
SILENCE = {"enabled": True, "silent_after": 2.0}


async def records_of(daemon, caller: str, count: int, wait: float = 20) -> list[CallDetail]:
    """The complete records (ended, recording noted) of count calls from caller."""

    async def get() -> list[CallDetail] | None:
        await daemon.writer.wait_idle(2)
        rows = await daemon.repository.list_calls(caller=caller, limit=100)
        done = [r for r in rows if r.ended_at is not None and r.recording_path is not None]
        if len(rows) < count or len(done) < len(rows):
            return None
        details = [await daemon.repository.get_call(r.call_id) for r in rows]
        return [d for d in details if d is not None]

    found = await wait_for(get, wait, f"{count} complete records from {caller}")
    assert len(found) == count, [d.call.call_id for d in found]
    return found


async def complete(daemon, call_id: str) -> CallDetail:
    """The call's record once ended with its recording noted."""

    async def get() -> CallDetail | None:
        detail = await record(daemon, call_id)
        return detail if detail.call.recording_path is not None else None

    return await wait_for(get, 15, f"the recording of {call_id} in its record")


def invites_from(phone, *numbers: str) -> list[str]:
    """The callers of the INVITEs this desk phone got from these numbers (national or E.164;
    another run's calls on the shared PBX may ring it too)."""
    wanted = {*numbers, *(e164(n) for n in numbers)}
    callers = [e.fields.get("caller", "") for e in phone.logs() if e.event == "invite"]
    return [c for c in callers if c in wanted]


def assert_complete(detail: CallDetail) -> None:
    """Exactly one complete record: arrived, ended, one 'ended' event, unique event ids, and
    a recording that exists, is not empty and whose path and length are in the record."""
    call = detail.call
    types = [e.type for e in detail.events]
    assert call.arrived_at is not None and call.ended_at is not None, call
    assert types.count("arrived") == 1 and types.count("ended") == 1, types
    assert len({e.event_id for e in detail.events}) == len(detail.events)
    assert call.recording_path == str(Path(call.recording_path).parent / f"{call.call_id}.wav")
    path = Path(call.recording_path)
    assert path.is_file() and path.stat().st_size > 44, f"recording {path} missing or empty"
    assert call.recording_seconds is not None and call.recording_seconds > 0


async def desk_phones(phones, ops: list[int], **options):
    return [await phones.operator(n, calls=None, **options) for n in ops]


async def marked_calls(phones, pcaps, number: str, count: int) -> None:
    """count calls from number at once, each answered by a desk phone that marks it *7 (prank)
    and hangs up; returns when every citizen has had its BYE."""
    # Talking, as a phone's caller does: the recording then has the caller in it. (A SIPp
    # citizen that sends no audio at all, in a call of a second, leaves a recording with no
    # audio in it: nobody said anything, and nothing played to them long enough.)
    citizens = [await phones.citizen(number, MOBILE, hold=None, audio=pcaps.speech(10))
                for _ in range(count)]
    for citizen in citizens:
        result = await citizen.wait(20)
        assert result.ok and result.events("bye_received"), result.explain()


async def test_six_pranks_block_the_number_and_five_is_the_way_through(
    daemon_factory, phones
) -> None:
    """Six calls marked *7 block the number (more than 5 in the window); the seventh is
    screened blocked and rings nobody; the eighth presses 5 and reaches an operator in the
    priority lane, its record flagged blocked_bypass."""
    ops = [1, 2, 3, 4, 5, 6]
    daemon = await daemon_factory(logged_in=[f"op{n}" for n in ops], **QUICK,
                                  screening={"bypass_wait": 3.0})
    await desk_phones(phones, ops, ring=0.2, talk=1.0, dtmf=phones.pcaps.dtmf("*7"), dtmf_at=0.5)
    number = mobile_number()
    await marked_calls(phones, phones.pcaps, number, 6)
    pranks = await records_of(daemon, e164(number), 6)
    assert [d.call.disposition for d in pranks] == [Disposition.PRANK.value] * 6
    for detail in pranks:
        assert_complete(detail)
    await wait_for(lambda: daemon.screening.check(e164(number)).blocked, 10, "the block")
    blocks = await daemon.repository.list_blocks()
    assert [(b.number, b.by) for b in blocks if b.number == e164(number)] == [
        (e164(number), "policy")
    ]

    await phones.stop_all()
    for n in ops:
        daemon.desk.choose(f"op{n}", OperatorState.LOGGED_OUT, reason="test", persist=True)
    op7 = await phones.operator(7, ring=0.2, talk=1.0, calls=None)
    daemon.desk.choose("op7", OperatorState.AVAILABLE, reason="test", persist=True)
    seventh = await phones.citizen(number, MOBILE, hold=None)
    seventh_id = await call_of(daemon, e164(number))
    result = await seventh.wait(20)
    assert result.ok and result.events("bye_received"), result.explain()
    blocked = await complete(daemon, seventh_id)
    types = [e.type for e in blocked.events]
    assert blocked.call.disposition == Disposition.BLOCKED.value
    assert "blocked_announced" in types and "queued" not in types, types
    assert invites_from(op7, number) == [], "a blocked caller must not ring an operator"
    assert_complete(blocked)

    eighth = await phones.citizen(number, MOBILE, hold=None, dtmf=phones.pcaps.dtmf("5"),
                                  dtmf_at=1.0)
    eighth_id = await call_of(daemon, e164(number))
    result = await eighth.wait(20)
    assert result.ok, result.explain()
    assert len(invites_from(op7, number)) == 1
    bypass = await complete(daemon, eighth_id)
    assert bypass.call.operator == "op7"
    assert bypass.call.priority is True
    assert "blocked_bypass" in bypass.call.flags
    assert bypass.call.disposition == Disposition.GENUINE.value
    assert_complete(bypass)


async def test_block_expires_and_eleven_marks_refer_the_number(
    daemon_factory, phones, stack
) -> None:
    """Eight calls marked *7 block the number for a moment (policy.block_hours tiny); once the
    block is over (expire_due audits it) the number gets through again, and three more marked
    calls (eleven in all) put it on the referral export, also through the CLI."""
    ops = list(range(1, 9))
    daemon = await daemon_factory(logged_in=[f"op{n}" for n in ops], **QUICK,
                                  policy={"block_hours": 0.0005})
    await desk_phones(phones, ops, ring=0.2, talk=1.0, dtmf=phones.pcaps.dtmf("*7"), dtmf_at=0.5)
    number = mobile_number()
    await marked_calls(phones, phones.pcaps, number, 8)
    await records_of(daemon, e164(number), 8)

    async def expired() -> bool:
        await daemon.policy.expire_due()
        async with daemon.engine.connect() as conn:
            actions = (
                await conn.execute(
                    text("SELECT action FROM block_audit WHERE number = :n ORDER BY id"),
                    {"n": e164(number)},
                )
            ).scalars().all()
        return list(actions) == ["block", "expire"]

    await wait_for(expired, 15, "the block and its audited expiry")
    assert not daemon.screening.check(e164(number)).blocked

    await marked_calls(phones, phones.pcaps, number, 3)
    calls = await records_of(daemon, e164(number), 11)
    assert all(d.call.disposition == Disposition.PRANK.value for d in calls)
    assert all(d.call.operator is not None for d in calls), "every call reached an operator"
    referrals = await wait_for(daemon.repository.referrals, 10, "the referral")
    mine = [r for r in referrals if r.number == e164(number)]
    assert len(mine) == 1 and mine[0].count == 11

    env = {**os.environ, "SIAGA112_DATABASE__URL": stack.db_url}
    out = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).with_name("siaga112")), "referrals", "export", "--format",
         "csv"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["number"], r["count"]) for r in rows if r["number"] == e164(number)] == [
        (e164(number), "11")
    ]


async def test_silent_caller_who_presses_55_goes_ahead_of_a_waiting_caller(
    daemon_factory, phones
) -> None:
    """With op1 paused, a caller who speaks queues first, then a silent caller hears the
    prompt and sends 5 5; resumed, op1 rings the silent caller first. The speaking caller is
    heard by TALK_DETECT (no prompt, not cut off as a ghost) and is answered next."""
    daemon = await daemon_factory(logged_in=[], **QUICK, silence=SILENCE)
    op1 = await phones.operator(1, ring=0.2, talk=1.0, calls=None)
    talker_no, silent_no = mobile_number(), mobile_number()
    talker = await phones.citizen(talker_no, MOBILE, hold=None, audio=phones.pcaps.speech(30))
    talker_id = await call_of(daemon, e164(talker_no))
    talking = daemon.stasis.sessions[talker_id]
    await wait_for(lambda: talking.waiting.talked, 10, "TALK_DETECT to hear the speaking caller")
    silent = await phones.citizen(silent_no, MOBILE, hold=None, audio=phones.pcaps.silence(10),
                                  dtmf=phones.pcaps.dtmf("55"), dtmf_at=4.0)
    silent_id = await call_of(daemon, e164(silent_no))
    session = daemon.stasis.sessions[silent_id]
    await wait_for(lambda: "silent_emergency" in session.flags, 15, "the silent emergency")
    assert [e.call_id for e in daemon.queue.snapshot().entries] == [silent_id, talker_id]

    daemon.desk.choose("op1", OperatorState.AVAILABLE, reason="test", persist=True)
    for citizen in (silent, talker):
        result = await citizen.wait(30)
        assert result.ok and result.events("bye_received"), result.explain()
    assert invites_from(op1, silent_no, talker_no) == [e164(silent_no), e164(talker_no)]

    first = await complete(daemon, silent_id)
    types = [e.type for e in first.events]
    assert "silent_prompt" in types and "silent_emergency" in types, types
    assert first.call.priority and "silent_emergency" in first.call.flags
    assert first.call.disposition == Disposition.GENUINE.value
    second = await complete(daemon, talker_id)
    assert "silent_prompt" not in [e.type for e in second.events]
    assert second.call.disposition == Disposition.GENUINE.value
    for detail in (first, second):
        assert_complete(detail)


async def test_silent_callers_who_do_nothing_wait_flagged_and_never_count_as_ghosts(
    daemon_factory, phones
) -> None:
    """Two silent callers from one number press nothing while nobody can answer. They hear the
    prompt to its end and stay queued, flagged silent, until they hang up themselves; the
    system never ends their call nor marks it a ghost, so nothing counts toward the policy
    (threshold 1 here: two ghost marks would block)."""
    daemon = await daemon_factory(logged_in=[], **QUICK, silence=SILENCE,
                                  policy={"prank_block_threshold": 1})
    number = mobile_number()
    citizens = [
        await phones.citizen(number, MOBILE, hold=14.0, audio=phones.pcaps.silence(20))
        for _ in range(2)
    ]
    waiting = await wait_for(
        lambda: [e for e in daemon.queue.snapshot().entries if "silent" in e.flags] or None,
        15, "two callers flagged silent in the queue")
    await wait_for(lambda: len([e for e in daemon.queue.snapshot().entries
                                if "silent" in e.flags]) == 2, 10, "both flagged silent")
    assert all(e.caller == e164(number) for e in waiting)
    for citizen in citizens:
        result = await citizen.wait(30)
        assert result.ok, result.explain()
        assert not result.events("bye_received"), "the system hung up a waiting caller"
    records = await records_of(daemon, e164(number), 2)
    for detail in records:
        assert detail.call.disposition == Disposition.ABANDONED.value
        assert "silent" in detail.call.flags
        types = [e.type for e in detail.events]
        assert "silent_prompt" in types and "connected" not in types, types
        assert_complete(detail)
    await asyncio.sleep(1.0)
    await daemon.screening.reload()
    assert not daemon.screening.check(e164(number)).blocked


async def test_postgres_down_in_the_middle_of_calls_loses_no_record(
    daemon_factory, phones, stack
) -> None:
    """PostgreSQL stops while calls are connected; more calls come, are answered and reach
    operators while it is down; it starts again and every call's record is there, once."""
    from siaga112_testkit.devstack.postgres import start_postgres, stop_postgres

    ops = [1, 2, 3]
    daemon = await daemon_factory(logged_in=[f"op{n}" for n in ops], **QUICK)
    await desk_phones(phones, ops, ring=0.2, talk=3.0)
    before = [mobile_number() for _ in ops]
    during = [mobile_number() for _ in ops]
    first = [await phones.citizen(n, MOBILE, hold=None, audio=phones.pcaps.speech(10))
             for n in before]
    ids = [await call_of(daemon, e164(n)) for n in before]
    await wait_for(
        lambda: all(daemon.stasis.sessions[i].state is CallState.CONNECTED for i in ids
                    if i in daemon.stasis.sessions), 10, "the first calls connected")
    await asyncio.to_thread(stop_postgres, stack.state_dir)
    try:
        second = [await phones.citizen(n, MOBILE, hold=None, audio=phones.pcaps.speech(10))
                  for n in during]
        for citizen in first + second:
            result = await citizen.wait(30)
            assert result.ok and result.events("bye_received"), result.explain()
        assert daemon.writer.backlog > 0, "records wait in the journal while PostgreSQL is down"
        assert daemon.writer.dropped == 0
    finally:
        await asyncio.to_thread(start_postgres, stack.state_dir, 5432)
    for number in before + during:
        [detail] = await records_of(daemon, e164(number), 1, wait=30)
        assert detail.call.operator in {f"op{n}" for n in ops}, detail.call
        assert detail.call.disposition == Disposition.GENUINE.value
        assert_complete(detail)
    assert daemon.writer.dropped == 0 and daemon.writer.quarantined == 0
