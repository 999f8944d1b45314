"""An operator's desk phone that dies in the middle of a call (power or network gone: no BYE)
does not leave the citizen in a silent bridge: the daemon finds no media coming from it, hangs
its leg up, pauses the operator (phone_lost) and puts the citizen back at the front of the
queue, where the next operator takes them. A phone that talks is never taken for lost."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from siaga112.model import CallEventType, CallState, OperatorState
from tests.conftest import stored_choice, wait_for
from tests.integration.phones import MOBILE, e164, invites, logged, mobile_number
from tests.integration.test_call_path import call_of, record
from tests.integration.test_caller_clock import mqtt_json
from tests.integration.test_events_api import mqtt_settled, tap  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

DYING, NEXT = 6, 1  # op6's phone dies; op1 takes the citizen after it
TIMEOUT = 2.0  # queue.desk_media_timeout for this test (a real centre: 10 s)


async def test_a_desk_phone_that_dies_mid_call_hands_the_citizen_to_the_next_operator(
        daemon_factory, phones, tap) -> None:  # noqa: F811
    daemon = await daemon_factory(logged_in=[f"op{DYING}"],
                                  queue={"desk_media_timeout": TIMEOUT})
    p = daemon.settings.mqtt.topic_prefix
    await mqtt_settled(daemon)
    feed = await tap(f"{p}/#")
    # op6 talks (its phone sends speech from the answer on) and never hangs up.
    dying = await phones.operator(DYING, ring=0.3, talk=None,
                                  dtmf=phones.pcaps.speech(10), dtmf_at=0.0)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=None)  # holds on, silent, till the end
    call_id = await call_of(daemon, e164(number))
    session = daemon.stasis.sessions[call_id]
    await wait_for(lambda: session.state is CallState.CONNECTED, 10, "op6 connected")

    # Twice the timeout of a call in which the phone talks: it is not taken for lost.
    await asyncio.sleep(2 * TIMEOUT)
    assert session.state is CallState.CONNECTED and session.operator == f"op{DYING}"

    # op1 comes to the desk; then op6's phone loses its power: no BYE, no more media.
    after = await phones.operator(NEXT, ring=0.3, talk=1.0)
    daemon.desk.choose(f"op{NEXT}", OperatorState.AVAILABLE, None, persist=True)
    assert dying.pid is not None
    os.killpg(dying.pid, signal.SIGKILL)
    await dying.wait(5)  # gone, its address free
    # Its power comes back: the phone boots with no call. It answers the BYE the PBX sends
    # to the dead leg when the daemon hangs it up (retransmitted until answered; unanswered,
    # for 32 s, and the next test's op6 would take it for its call).
    reborn = await phones.operator(DYING, ring=0.3, talk=None)

    result = await citizen.wait(30)
    assert result.ok and result.events("bye_received"), result.explain()
    await logged(reborn, "bye_received", 10)
    assert invites(after) == [e164(number)], "op1's phone did not show the citizen's number"

    rec = await record(daemon, call_id)
    # The record names the operator who answered first (its wait ends there, as after an
    # operator gone while the daemon was away); its events have both.
    assert (rec.call.operator, rec.call.disposition) == (f"op{DYING}", "genuine"), rec.call
    types = [e.type for e in rec.events]
    lost = next(e for e in rec.events if e.type == CallEventType.OPERATOR_LEFT.value)
    assert lost.data["operator"] == f"op{DYING}" and lost.data["phone_lost"] is True
    assert TIMEOUT <= lost.data["silent_for"] < 3 * TIMEOUT, lost.data
    requeued = next(e for e in rec.events if e.type == CallEventType.REQUEUED.value)
    assert requeued.data["reason"] == "operator_phone_lost"
    connects = [e.data["operator"] for e in rec.events if e.type == CallEventType.CONNECTED.value]
    assert connects == [f"op{DYING}", f"op{NEXT}"], types
    assert CallEventType.HANDED_BACK.value not in types

    # The dead phone's operator is paused, in memory, in the database and on MQTT, so that
    # nobody's call is sent to it until someone looks at the phone.
    op = daemon.desk.get(f"op{DYING}")
    assert (op.state, op.reason) == (OperatorState.PAUSED, "phone_lost")
    assert await stored_choice(f"op{DYING}") == "paused"
    # The engineer on call sees it in /metrics.
    assert f'siaga112_desk_phones_lost_total{{operator="op{DYING}"}} 1.0' in \
        daemon.metrics.render().decode()
    await mqtt_settled(daemon)
    docs = mqtt_json(feed)
    assert any(d.get("call_id") == call_id and d.get("type") == "operator_left"
               and d.get("data", {}).get("phone_lost") for d in docs), docs
    assert any(d.get("operator") == f"op{DYING}" and d.get("state") == "paused"
               and d.get("reason") == "phone_lost" for d in docs)
