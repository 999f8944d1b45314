"""An operator's desk phone that dies in the middle of a call (power or network gone: no BYE)
does not leave the citizen in a silent bridge: the daemon finds no media coming from it, hangs
its leg up, pauses the operator (phone_lost) and puts the citizen back at the front of the
queue, where the next operator takes them. A phone that talks, or that holds the call with its
hold key (sending nothing, the citizen hearing music), is never taken for lost."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from siaga112.model import CallEventType, CallState, OperatorState
from tests.conftest import stored_choice, wait_for
from tests.integration.phones import MOBILE, e164, invites, logged, mobile_number
from tests.integration.rtp_meter import RtpMeter
from tests.integration.test_call_path import call_of, record
from tests.integration.test_caller_clock import mqtt_json
from tests.integration.test_events_api import mqtt_settled, tap  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

DYING, NEXT = 6, 1  # op6's phone dies; op1 takes the citizen after it
TIMEOUT = 2.0  # queue.desk_media_timeout for this test (a real centre: 10 s)
HELD_TIMEOUT = 8.0  # queue.desk_media_timeout_held (a real centre: 300 s)
TALK, HELD = 2.5, 2 * TIMEOUT  # op6 talks, then holds the citizen for twice the timeout


async def test_a_desk_phone_that_dies_mid_call_hands_the_citizen_to_the_next_operator(
        daemon_factory, phones, tap) -> None:  # noqa: F811
    daemon = await daemon_factory(logged_in=[f"op{DYING}"], queue={
        "desk_media_timeout": TIMEOUT, "desk_media_timeout_held": HELD_TIMEOUT})
    p = daemon.settings.mqtt.topic_prefix
    await mqtt_settled(daemon)
    feed = await tap(f"{p}/#")
    # op6 talks (speech from the answer), holds the citizen with its hold key (nothing sent),
    # takes them back and talks again; it never hangs up.
    dying = await phones.operator_hold(DYING, ring=0.3, talk=TALK, held=HELD, after=None,
                                       before_audio=phones.pcaps.speech(2),
                                       after_audio=phones.pcaps.speech(30))
    number = mobile_number()
    async with RtpMeter({"citizen": MOBILE}) as meter:
        citizen = await phones.citizen(number, MOBILE, hold=None)  # silent, holds on to the end
        call_id = await call_of(daemon, e164(number))
        session = daemon.stasis.sessions[call_id]
        await wait_for(lambda: session.state is CallState.CONNECTED, 10, "op6 connected")

        # On hold for twice the plain timeout: not taken for lost, and the citizen hears music.
        await logged(dying, "held", TALK + 5)
        on_hold = meter.now()
        await logged(dying, "unheld", HELD + 5)
        music = meter.loud("citizen", since=on_hold)
        assert music >= 50 * HELD / 2, f"the citizen heard {music} loud packets while held"
        # Talking again, for the plain timeout and more.
        await asyncio.sleep(TIMEOUT + 1)
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
    # operator gone while the daemon was away), and both in `operators`; its events have both.
    assert (rec.call.operator, rec.call.disposition) == (f"op{DYING}", "genuine"), rec.call
    assert rec.call.operators == [f"op{DYING}", f"op{NEXT}"], rec.call
    types = [e.type for e in rec.events]
    left = [e.data for e in rec.events if e.type == CallEventType.OPERATOR_LEFT.value]
    # op6's phone lost once (not while held, not while talking), then op1's own hang-up.
    assert [(d["operator"], d.get("phone_lost", False)) for d in left] == [
        (f"op{DYING}", True), (f"op{NEXT}", False)], left
    lost = [e for e in rec.events if e.data.get("phone_lost")]
    assert TIMEOUT <= lost[0].data["silent_for"] < 3 * TIMEOUT, lost[0].data
    requeued = next(e for e in rec.events if e.type == CallEventType.REQUEUED.value)
    assert requeued.data["reason"] == "operator_phone_lost"
    connects = [e.data["operator"] for e in rec.events
                if e.type == CallEventType.CONNECTED.value]
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

    def seen() -> bool:  # published is not yet received by our subscriber: wait for it
        docs = mqtt_json(feed)
        return any(d.get("call_id") == call_id and d.get("type") == "operator_left"
                   and d.get("data", {}).get("phone_lost") for d in docs) and any(
            d.get("operator") == f"op{DYING}" and d.get("state") == "paused"
            and d.get("reason") == "phone_lost" for d in docs)

    await wait_for(seen, 5, "op6's phone_lost on MQTT: the call's event and op6 paused")
