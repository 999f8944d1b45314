"""Chaos (issue 11, item 7): the daemon killed with SIGKILL at five instants of a call, under a
small load, then started again. From the callers' side every call is served by a person (an
operator, through the daemon or through the dialplan's fallback queue while it is dead), and
after recovery PostgreSQL holds every call's record exactly once: the restarted daemon takes
back live calls, imports the fallback journal and closes orphans.

A run: the desk phones op1 and op2 (logged in) answer every call; op3 (logged out) is a desk
phone only the fallback queue rings; agency 01's duty line answers and accepts. One or two
callers come first, then the probe call, which is at the instant when the daemon is killed; a
caller calls while it is dead (the fallback queue, op3 answers), another after it is back. Every
caller waits until the far side hangs up. Escalation is short (queue.no_operator_timeout), so
that a call nobody can answer is handed to the fallback queue rather than waiting long.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from siaga112_testkit.sipp import SippRun
from tests.conftest import wait_for
from tests.integration.phones import LANDLINE, MOBILE, e164, invites, logged, mobile_number
from tests.integration.test_caller_clock import (  # noqa: F401 - fixtures used by name
    Records,
    _in_holding,
    daemon_process,
    ok,
    records,
    served_by,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Desk:
    """How the desk phones behave in one run."""

    ring: float  # seconds before an operator answers
    talk: float  # seconds from the answer to the operator's BYE
    code: str | None = None  # what the operator dials during the call (*201: agency 01)
    agency_ring: float = 0.3
    first: int = 1  # callers before the probe


DESKS = {
    "arriving": Desk(ring=0.3, talk=2.0),
    "queued": Desk(ring=0.3, talk=4.0, first=2),  # both operators busy: the probe waits
    "operator_ringing": Desk(ring=3.0, talk=2.0),  # answers while the daemon is dead
    "connected": Desk(ring=0.3, talk=4.0),
    "agency_ringing": Desk(ring=0.3, talk=7.0, code="*201", agency_ring=4.0),
}


def answered_calls(phones: list[SippRun]) -> int:
    return sum(1 for p in phones for e in p.logs() if e.event == "answered")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("instant", list(DESKS))
async def test_sigkill_at_an_instant_of_a_call_loses_no_call_and_no_record(
    instant: str, daemon_process, phones, records: Records  # noqa: F811
) -> None:
    desk = DESKS[instant]
    daemon = await daemon_process(["op1", "op2"], agency={"answer_timeout": 20},
                                  queue={"ring_timeout": 8, "no_operator_timeout": 8})
    code = {"dtmf": phones.pcaps.dtmf(desk.code), "dtmf_at": 0.5} if desk.code else {}
    ops = [await phones.operator(n, ring=desk.ring, talk=desk.talk, calls=None, **code)
           for n in (1, 2)]
    spare = await phones.operator(3, ring=0.3, talk=1.0, calls=None)
    desks = [*ops, spare]
    agency = await phones.agency("01", ring=desk.agency_ring, talk=3.0,
                                 dtmf=phones.pcaps.dtmf("1"), dtmf_at=0.3, calls=None)
    callers: dict[str, SippRun] = {}

    async def call(line: str = MOBILE) -> str:
        number = mobile_number()
        callers[number] = await phones.citizen_clock(number, line, hold=None)
        return number

    # The load before the instant.
    for n in range(desk.first):
        await call(LANDLINE)
        await wait_for(lambda n=n: len([c for p in ops for c in invites(p)]) > n, 10,
                       "an operator rung for the first callers")
    if instant == "queued":
        await wait_for(lambda: answered_calls(ops) >= 2, 10, "both operators on a call")

    # The probe, and the kill at its instant.
    probe = await call()
    if instant == "arriving":
        await logged(callers[probe], "invite_sent", 5)  # the INVITE is on its way
    elif instant == "queued":
        await wait_for(lambda: _in_holding(probe), 10, "the probe waiting in the queue")
    elif instant == "operator_ringing":
        await wait_for(lambda: served_by(ops, probe), 10, "an operator's phone ringing")
        await asyncio.sleep(0.5)
    elif instant == "connected":
        await wait_for(lambda: served_by(ops, probe) and answered_calls(ops) >= 2, 10,
                       "the probe connected")
        await asyncio.sleep(1.0)
    elif instant == "agency_ringing":
        await wait_for(lambda: e164(probe) in invites(agency), 15, "the agency's line ringing")
        await asyncio.sleep(0.5)
    daemon.kill9()

    # A caller while the daemon is dead: the dialplan's fallback queue takes the call, and its
    # record waits in the fallback journal for the restarted daemon.
    down = await call()
    result = await callers[down].wait(30)
    assert result.ok and served_by(desks, down), f"with the daemon dead: {result.explain()}"
    await daemon.start()
    await call(LANDLINE)

    for number, citizen in callers.items():
        result = await citizen.wait(60)
        assert result.ok and result.events("bye_received"), (number, result.explain())
        assert served_by(desks, number), f"{number} never reached an operator"

    for number in callers:
        [detail] = await records.ended(number, seconds=40)
        assert detail.call.disposition in ("genuine", "fallback"), (
            number, detail.call.disposition, [e.type for e in detail.events])
        if instant == "agency_ringing" and number == probe:
            # The duty line rang when the daemon died: after the restart the agency the
            # operator asked for still reaches the citizen (nothing lost, not the dispatch).
            assert "agency_joined" in [e.type for e in detail.events], (
                "the dispatch requested before the kill never reached the citizen: "
                f"{[e.type for e in detail.events]}; agency line: {agency.logs()}")
    await asyncio.sleep(1.0)
    for number in callers:
        assert len(await records.of(number)) == 1, f"{number}: not exactly one record"
