"""The operator's desk phone watched for media while it is connected (call/desk_media.py), on a
hand-driven clock: a phone gone silent hands the citizen back to the front of the queue, a
phone that talks, or that holds the call, is left alone, and a look that fails decides
nothing. The same on the real PBX: tests/integration/test_desk_phone_lost.py."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs
from tests.fakes import FakeAri, FakeClock, ListSink, operator
from tests.unit.test_call_timeline import CALL, answered_by_op1, build, citizen, settle

from siaga112 import legs
from siaga112.ari.client import AriError, NotFound, Unreachable
from siaga112.ari.models import Channel, ChannelDestroyed, ChannelHold, ChannelUnhold, StasisEnd
from siaga112.model import CallState, OperatorState
from siaga112.operators import OperatorDesk
from siaga112.queue import CallQueue
from siaga112.stasis import Stasis

OP1 = f"{CALL}-op-op1-1"
WATCHED: dict[str, Any] = {"queue": {"wrapup": 0, "desk_media_timeout": 10}}


async def connected(ari: FakeAri, clock: FakeClock, **settings: Any) -> tuple[
    Stasis, OperatorDesk, CallQueue, ListSink
]:
    stasis, desk, queue, sink = build(ari, clock, **(settings or WATCHED))
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    return stasis, desk, queue, sink


async def tick(clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    """Let time pass a second at a time, the session running what falls due."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await settle()


async def test_a_phone_that_went_silent_hands_the_citizen_back_to_the_front() -> None:
    ari, clock = FakeAri(rx={OP1: 500}), FakeClock()
    stasis, desk, queue, sink = await connected(ari, clock)
    for _ in range(8):  # talking for 40 s: the count moves between looks
        ari.rx[OP1] += 250
        await tick(clock, 5)
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    assert ari.called("rtp_statistics") and not ari.called("hangup")
    with capture_logs() as logs:
        await tick(clock, 9)  # the phone loses power: no packet from here on
        assert stasis.sessions[CALL].state is CallState.CONNECTED, "lost before the timeout"
        await tick(clock, 7)
    session = stasis.sessions[CALL]
    assert ("hangup", OP1) in ari.calls
    assert operator(desk, "op1").state is OperatorState.PAUSED
    assert operator(desk, "op1").reason == "phone_lost"
    # First in line again, and rung to the other operator at once.
    assert session.state is CallState.RINGING_OPERATOR and session.operator == "op2"
    left = [e for e in sink.calls if e.type.value == "operator_left"]
    assert left[-1].data["operator"] == "op1" and left[-1].data["phone_lost"] is True
    assert 10 <= left[-1].data["silent_for"] < 16
    requeued = [e for e in sink.calls if e.type.value == "requeued"]
    assert requeued[-1].data["reason"] == "operator_phone_lost"
    assert [e for e in logs if e["event"] == "operator_phone_lost"]
    assert not [e for e in logs if e["log_level"] in ("error", "critical", "exception")]
    # The lost leg's own end, when it comes, changes nothing: it is no longer the call's.
    stasis.on_event(ChannelDestroyed(type="ChannelDestroyed", cause=44,
                                     channel=Channel(id=OP1)))
    await settle()
    assert session.state is CallState.RINGING_OPERATOR and "ended" not in sink.types()


async def test_a_phone_that_never_sent_media_is_lost_after_the_timeout_from_the_answer() -> None:
    ari, clock = FakeAri(rx={OP1: 0}), FakeClock()
    stasis, desk, _, _ = await connected(ari, clock)
    await tick(clock, 9)
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    await tick(clock, 2)
    assert operator(desk, "op1").reason == "phone_lost"


async def test_a_look_that_fails_decides_nothing() -> None:
    """The PBX too busy to answer, or refusing the request: the call stays as it is, and the
    next look decides (here the phone talks again)."""
    ari, clock = FakeAri(rx={OP1: 100}), FakeClock()
    stasis, _, _, _ = await connected(ari, clock)
    ari.fail["rtp_statistics"] = Unreachable("GET", "/channels/x/rtp_statistics", 0, "Timeout")
    await tick(clock, 30)
    ari.fail["rtp_statistics"] = AriError("GET", "/channels/x/rtp_statistics", 500, "oops")
    await tick(clock, 10)
    assert stasis.sessions[CALL].state is CallState.CONNECTED and not ari.called("hangup")
    del ari.fail["rtp_statistics"]
    ari.rx[OP1] += 50
    await tick(clock, 5)
    assert stasis.sessions[CALL].state is CallState.CONNECTED and not ari.called("hangup")
    assert len(ari.called("rtp_statistics")) >= 9


async def on_hold(ari: FakeAri, clock: FakeClock) -> tuple[Stasis, OperatorDesk]:
    """op1 connected (timeouts 10 s, 60 s held), then its phone holds the call."""
    stasis, desk, _, _ = await connected(
        ari, clock, queue={"wrapup": 0, "desk_media_timeout": 10,
                           "desk_media_timeout_held": 60})
    stasis.on_event(ChannelHold(type="ChannelHold", channel=Channel(id=OP1)))
    await settle()
    return stasis, desk


async def test_a_phone_that_holds_the_call_has_the_held_timeout() -> None:
    ari, clock = FakeAri(rx={OP1: 100}), FakeClock()
    stasis, desk = await on_hold(ari, clock)
    await tick(clock, 55)  # on hold, sending nothing
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    stasis.on_event(ChannelUnhold(type="ChannelUnhold", channel=Channel(id=OP1)))
    await settle()
    await tick(clock, 9)  # back, but nothing comes: the plain timeout counts from the unhold
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    await tick(clock, 7)
    assert operator(desk, "op1").reason == "phone_lost"


async def test_a_phone_lost_while_holding_is_found_by_the_held_timeout() -> None:
    ari, clock = FakeAri(rx={OP1: 100}), FakeClock()
    stasis, desk = await on_hold(ari, clock)
    await tick(clock, 95)
    assert operator(desk, "op1").reason == "phone_lost"
    assert stasis.sessions[CALL].operator == "op2"


async def test_unwatched_and_ended_calls_ask_nothing() -> None:
    ari, clock = FakeAri(rx={OP1: 0}), FakeClock()
    stasis, _, _, _ = await connected(ari, clock,
                                      queue={"wrapup": 0, "desk_media_timeout": 0})
    await tick(clock, 60)
    assert not ari.called("rtp_statistics") and not ari.called("hangup")
    assert stasis.sessions[CALL].state is CallState.CONNECTED

    ari, clock = FakeAri(rx={OP1: 0}), FakeClock()
    stasis, _, _, sink = await connected(ari, clock)
    stasis.on_event(StasisEnd(type="StasisEnd", channel=Channel(id=CALL)))
    await settle()
    asked = len(ari.called("rtp_statistics"))
    await tick(clock, 60)
    assert len(ari.called("rtp_statistics")) == asked == 0
    assert sink.types()[-1] == "ended" and CALL not in stasis.sessions


async def test_a_citizen_who_leaves_as_the_phone_is_found_lost_is_a_hang_up_not_a_fault() -> None:
    """The race at its worst instant: the citizen hangs up just as the silent phone is found
    lost, so putting them back in the queue finds no channel. The call ends as the caller's
    hang-up: no hand-back, no error, the dead leg hung up, op1 paused."""
    ari, clock = FakeAri(rx={OP1: 0}), FakeClock()
    stasis, desk, _, sink = await connected(ari, clock)
    ari.alive = set()  # neither leg is there any more
    ari.fail["add_to_bridge"] = NotFound("POST", "/bridges/h/addChannel", 404,
                                         "Channel not found")
    with capture_logs() as logs:
        await tick(clock, 11)
    assert CALL not in stasis.sessions and sink.types()[-1] == "ended"
    assert "handed_back" not in sink.types() and not ari.called("continue_in_dialplan")
    assert ("hangup", OP1) in ari.calls
    assert operator(desk, "op1").reason == "phone_lost"
    assert not [e for e in logs if e["log_level"] in ("error", "critical", "exception")]


def test_hold_events_and_the_packet_count_are_read_from_what_asterisk_sends() -> None:
    from siaga112.ari.models import RtpStats, parse_event
    from siaga112.stasis import UNUSED_EVENTS

    held = parse_event(b'{"type": "ChannelHold", "application": "siaga112", "musicclass": "",'
                       b' "channel": {"id": "1.2-op-op1-1", "state": "Up"}}')
    assert isinstance(held, ChannelHold) and held.channel.id == "1.2-op-op1-1"
    back = parse_event(b'{"type": "ChannelUnhold", "channel": {"id": "1.2-op-op1-1"}}')
    assert isinstance(back, ChannelUnhold)
    assert not {"ChannelHold", "ChannelUnhold"} & set(UNUSED_EVENTS)  # Asterisk sends them
    stats = RtpStats.model_validate({"txcount": 0, "rxcount": 267, "local_ssrc": 1,
                                     "channel_uniqueid": "x"})
    assert stats.rxcount == 267


class AfterRestart(FakeAri):
    """A daemon started while a call was connected: the citizen and op1's leg in the call's
    bridge (and op1's phone, unknown to the new daemon, dead)."""

    async def channels(self) -> list[Channel]:
        self._call("channels")
        return [citizen().channel.model_copy(update={"state": "Up"}),
                Channel(id=OP1, state="Up")]


async def test_a_connected_call_taken_back_after_a_restart_is_watched_too() -> None:
    """The daemon was killed mid-call and op1's phone died while it was down (nobody sent a
    BYE, so the resync finds the leg up): the new daemon takes the call back as connected,
    watches the phone as any, and finds it lost."""
    ari, clock = AfterRestart(alive={CALL, OP1}, rx={OP1: 4000}), FakeClock()
    ari.members[f"siaga112-call-{CALL}"] = [CALL, OP1]
    stasis, desk, _, sink = build(ari, clock, **WATCHED)
    await stasis.resync()
    await settle()
    session = stasis.sessions[CALL]
    assert session.state is CallState.CONNECTED and session.operator == "op1"
    await tick(clock, 9)
    assert session.state is CallState.CONNECTED
    await tick(clock, 7)
    assert operator(desk, "op1").reason == "phone_lost"
    assert session.operator == "op2" and "operator_phone_lost" in [
        e.data.get("reason") for e in sink.calls if e.type.value == "requeued"]


async def test_with_an_agency_on_the_call_the_citizen_stays_with_it() -> None:
    """op1's phone dies after the fire brigade joined: the citizen is not taken from the
    agency into the queue; op1's dead leg is hung up and op1 paused."""
    ari, clock = FakeAri(rx={OP1: 0}), FakeClock()
    stasis, desk, _, sink = await connected(ari, clock)
    session = stasis.sessions[CALL]
    session.agencies.adopt(legs.agency_leg(CALL, "01", 1, 1), "dispatch-1", joined=True)
    await tick(clock, 16)
    assert ("hangup", OP1) in ari.calls and operator(desk, "op1").reason == "phone_lost"
    assert session.state is CallState.CONNECTED and session.operator is None
    assert "requeued" not in sink.types()


async def test_an_answer_that_is_not_a_count_decides_nothing_and_a_leg_without_rtp_is_let_be(
) -> None:
    from pydantic import ValidationError

    from siaga112.ari.models import RtpStats

    ari, clock = FakeAri(rx={OP1: 100}), FakeClock()
    stasis, _, _, _ = await connected(ari, clock)
    try:
        RtpStats.model_validate({"rxcount": -5})
    except ValidationError as exc:
        ari.fail["rtp_statistics"] = exc
    with capture_logs() as logs:
        await tick(clock, 30)
    assert stasis.sessions[CALL].state is CallState.CONNECTED and not ari.called("hangup")
    assert len([e for e in logs if e["event"] == "desk_media_bad_answer"]) >= 5

    # A desk that is no RTP phone (ARI: 403 "Unsupported channel type"): one look, no more.
    ari.fail["rtp_statistics"] = AriError("GET", "/channels/x/rtp_statistics", 403,
                                          "Unsupported channel type")
    await tick(clock, 5)
    asked = len(ari.called("rtp_statistics"))
    await tick(clock, 60)
    assert len(ari.called("rtp_statistics")) == asked
    assert stasis.sessions[CALL].state is CallState.CONNECTED and not ari.called("hangup")
