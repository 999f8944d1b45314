"""A call's timers from the caller's clock, driven by a hand-advanced clock (no sleeping): the
blocked announcement, the silent caller, races with a vanishing leg, a graceful stop, and the
overflow when nobody can answer. The same timelines run on the real PBX in
tests/integration/test_caller_clock.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.fakes import FakeAri, FakeClock, ListSink, operator, rematch

from siaga112 import legs
from siaga112.agencies import Directory
from siaga112.ari.client import AriError, NotFound, Unreachable
from siaga112.ari.models import (
    CallerID,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    DialplanCEP,
    Playback,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
)
from siaga112.ari.retry import ATTEMPTS
from siaga112.call import CallDeps
from siaga112.call.arrival import PROMPT_LOST_AFTER
from siaga112.call.items import StopNow
from siaga112.holding import HoldingBridge
from siaga112.model import BlockEntry, CallEventType, CallState, OperatorState, utcnow
from siaga112.operators import OperatorDesk
from siaga112.overflow import Overflow
from siaga112.queue import CallQueue
from siaga112.screening import Screening
from siaga112.settings import Settings
from siaga112.stasis import Stasis

CALL = "1700000000.1"
CALL2 = "1700000000.2"  # a second caller
NUMBER = "081234567890"


def build(ari: FakeAri, clock: FakeClock, blocked: bool = False, **settings: Any) -> tuple[
    Stasis, OperatorDesk, CallQueue, ListSink
]:
    s = Settings(**{"silence": {"enabled": False}, "queue": {"wrapup": 0}, **settings})
    sink = ListSink()
    blocks = [BlockEntry(number="+6281234567890", blocked_until=None, reason="prank", by="t")]

    async def load() -> list[BlockEntry]:
        return blocks if blocked else []

    queue_ref: list[CallQueue] = []
    desk = OperatorDesk(["op1", "op2"], ari, sink, s.queue.wrapup, True,
                        on_change=lambda: rematch(queue_ref))
    queue = CallQueue(desk, on_change=lambda: None)
    queue_ref.append(queue)
    screening = Screening(load)
    deps = CallDeps(ari=ari, settings=s, screening=screening, queue=queue,
                    desk=desk, sink=sink, directory=Directory(s.agencies),
                    holding=HoldingBridge(ari, 30), clock=clock)
    return Stasis(deps), desk, queue, sink


def citizen() -> StasisStart:
    return StasisStart(
        type="StasisStart", args=["citizen"],
        channel=Channel(id=CALL, state="Ring", caller=CallerID(number=NUMBER),
                        channelvars={"SIAGA112_LINE": "mobile", "SIAGA112_TRUNK": "trunk-mobile"}),
    )


def finished(playback_id: str) -> PlaybackFinished:
    return PlaybackFinished(type="PlaybackFinished",
                            playback=Playback(id=playback_id, target_uri=f"channel:{CALL}"))


def dtmf(digit: str, channel: str = CALL) -> ChannelDtmfReceived:
    return ChannelDtmfReceived(type="ChannelDtmfReceived", digit=digit,
                               channel=Channel(id=channel))


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


async def logged_out(desk: OperatorDesk) -> None:
    for op in ("op1", "op2"):
        desk.choose(op, OperatorState.LOGGED_OUT, None, persist=False)


# -- a blocked caller ------------------------------------------------------------------------


async def test_the_wait_for_5_starts_when_the_announcement_has_finished() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, _, _, sink = build(ari, clock, blocked=True, screening={"bypass_wait": 8.0})
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle()
    assert ari.called("play")[0][2] == "sound:siaga112/blocked"
    # The announcement is long (it plays 20 s here): no timer may run out while it plays.
    clock.advance(20)
    await settle()
    assert CALL in stasis.sessions and not ari.called("hangup")
    stasis.on_event(finished(f"{CALL}-blocked"))
    await settle()
    clock.advance(7.9)
    await settle()
    assert not ari.called("hangup"), "hung up before the whole wait after the announcement"
    clock.advance(0.2)
    await settle()
    assert ("hangup", CALL) in ari.calls
    assert sink.calls[-1].data["disposition"] == "blocked"


@dataclass
class SlowPlay(FakeAri):
    """Asterisk too busy to answer a play in time, `slow` times; `carried_out`: it played
    all the same."""

    slow: int = 0
    carried_out: bool = False

    async def play(self, channel_id: str, media: str, playback_id: str | None = None,
                   ) -> Playback:
        played = await super().play(channel_id, media, playback_id)
        if self.slow > 0:
            self.slow -= 1
            if self.carried_out:
                self.playing.add(played.id)
            raise Unreachable("POST", f"/channels/{channel_id}/play", 0, "TimeoutError()")
        self.playing.add(played.id)
        return played


@pytest.mark.parametrize("carried_out", [True, False])
async def test_a_blocked_announcement_that_timed_out_is_looked_for_and_asked_again(
        carried_out: bool) -> None:
    """A prank flood saturates the PBX: its play answering late is not a fault that hands
    the prank to the operators' queue."""
    ari, clock = SlowPlay(slow=2, carried_out=carried_out), FakeClock()
    stasis, _, _, sink = build(ari, clock, blocked=True, screening={"bypass_wait": 1.0})
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle()
    assert ari.called("get_playback") == [("get_playback", f"{CALL}-blocked")] * (
        1 if carried_out else 2)
    assert len(ari.called("play")) == (1 if carried_out else 3)
    assert not ari.called("continue_in_dialplan"), "handed back: the prank reaches operators"
    assert CallEventType.BLOCKED_ANNOUNCED in [e.type for e in sink.calls]
    stasis.on_event(finished(f"{CALL}-blocked"))
    await settle()
    clock.advance(1.1)
    await settle()
    assert ("hangup", CALL) in ari.calls
    assert sink.calls[-1].data["disposition"] == "blocked"


async def test_a_blocked_announcement_that_never_gets_through_hands_the_call_back() -> None:
    ari, clock = SlowPlay(slow=ATTEMPTS), FakeClock()
    stasis, _, _, _ = build(ari, clock, blocked=True)
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle()
    assert len(ari.called("play")) == ATTEMPTS
    assert ari.called("continue_in_dialplan"), "fail open: the dialplan's queue takes it"


async def test_5_pressed_during_the_announcement_goes_to_the_priority_lane() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, sink = build(ari, clock, blocked=True)
    await logged_out(desk)
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(dtmf("5"))
    await settle()
    assert ("stop_playback", f"{CALL}-blocked") in ari.calls
    [entry] = queue.snapshot().entries
    assert entry.priority and entry.flags == ["blocked_bypass"]
    clock.advance(600)
    await settle()
    assert stasis.sessions[CALL].state is CallState.QUEUED


async def test_5_pressed_late_in_the_wait_after_the_announcement_goes_through() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, sink = build(ari, clock, blocked=True, screening={"bypass_wait": 8.0})
    await logged_out(desk)
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(finished(f"{CALL}-blocked"))
    await settle()
    clock.advance(7.5)
    stasis.on_event(dtmf("5"))
    await settle()
    clock.advance(10)
    await settle()
    assert not ari.called("hangup")
    assert queue.snapshot().entries[0].priority
    assert "bypass" in sink.types()


async def test_a_lost_playback_event_does_not_keep_a_blocked_caller_for_ever() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, _, _, sink = build(ari, clock, blocked=True, screening={"bypass_wait": 8.0})
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle()
    clock.advance(60)  # PlaybackFinished never comes
    await settle()
    assert not ari.called("hangup")
    clock.advance(8.1)
    await settle()
    assert ("hangup", CALL) in ari.calls


# -- a silent caller ---------------------------------------------------------------------------


async def silent_caller_prompted() -> tuple[FakeAri, FakeClock, Stasis, OperatorDesk, CallQueue,
                                            ListSink]:
    """Nobody logged in; a caller says nothing for 6 s and the prompt starts."""
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, sink = build(ari, clock, silence={"enabled": True, "silent_after": 6})
    await logged_out(desk)
    stasis.on_event(citizen())
    await settle()
    clock.advance(6)
    await settle()
    return ari, clock, stasis, desk, queue, sink


async def test_a_silent_caller_is_flagged_and_never_hung_up() -> None:
    ari, clock, stasis, desk, queue, sink = await silent_caller_prompted()
    assert ari.called("play")[-1][2] == "sound:siaga112/silent-check"
    assert queue.snapshot().entries[0].flags == []  # not before the prompt has played
    stasis.on_event(finished(f"{CALL}-silent"))
    await settle()
    assert queue.snapshot().entries[0].flags == ["silent"]
    clock.advance(3600)
    await settle()
    assert stasis.sessions[CALL].state is CallState.QUEUED
    assert not ari.called("hangup")
    assert "ghost" not in str([e.data for e in sink.calls])
    # An operator logs in: the silent caller is offered, flag and all.
    desk.choose("op1", OperatorState.AVAILABLE, None, persist=False)
    await settle()
    assert stasis.sessions[CALL].state is CallState.RINGING_OPERATOR


async def test_a_silent_prompt_whose_end_never_comes_still_flags_the_caller() -> None:
    """The PBX never says the "press 5 twice" prompt finished (a lost PlaybackFinished): after
    PROMPT_LOST_AFTER the prompt counts as played and the quiet caller is flagged all the same
    (the timer was once started and never routed: the flag was never set)."""
    ari, clock, stasis, desk, queue, sink = await silent_caller_prompted()
    clock.advance(PROMPT_LOST_AFTER - 1)
    await settle()
    assert queue.snapshot().entries[0].flags == []
    clock.advance(1.5)
    await settle()
    assert queue.snapshot().entries[0].flags == ["silent"]
    assert stasis.sessions[CALL].state is CallState.QUEUED and not ari.called("hangup")


async def test_a_silent_caller_who_presses_55_moves_to_the_priority_lane() -> None:
    ari, clock, stasis, desk, queue, sink = await silent_caller_prompted()
    stasis.on_event(finished(f"{CALL}-silent"))
    stasis.on_event(dtmf("5"))
    stasis.on_event(dtmf("5"))
    await settle()
    entry = queue.snapshot().entries[0]
    assert entry.priority and entry.flags == ["silent", "silent_emergency"]


# -- races are hang-ups, not faults -------------------------------------------------------------


async def test_the_caller_leaving_as_the_operator_answers_is_an_abandoned_call() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, _, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    op_leg = f"{CALL}-op-op1-1"
    ari.fail["add_to_bridge"] = AriError("POST", "/bridges/x/addChannel", 400,
                                         "Channel not found")
    with capture_logs() as logs:
        stasis.on_event(StasisStart(type="StasisStart", args=["operator", CALL],
                                    channel=Channel(id=op_leg)))
        await settle()
    assert stasis.sessions == {}
    assert "handed_back" not in sink.types()
    assert sink.calls[-1].data["disposition"] == "abandoned"
    assert ("hangup", op_leg) in ari.calls
    assert operator(desk, "op1").state is OperatorState.AVAILABLE
    assert not [e for e in logs if e["log_level"] in ("error", "critical", "exception")]


async def test_the_operator_leg_vanishing_as_it_is_bridged_requeues_the_caller() -> None:
    ari, clock = FakeAri(alive={CALL}), FakeClock()
    stasis, desk, queue, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    ari.fail["add_to_bridge"] = NotFound("POST", "/bridges/x/addChannel", 404, "not found")
    desk.choose("op2", OperatorState.LOGGED_OUT, None, persist=False)
    stasis.on_event(StasisStart(type="StasisStart", args=["operator", CALL],
                                channel=Channel(id=f"{CALL}-op-op1-1")))
    await settle()
    # The caller keeps their place; op1 answered, so is at the desk: offered the call again.
    assert stasis.sessions[CALL].state in (CallState.QUEUED, CallState.RINGING_OPERATOR)
    assert operator(desk, "op1").state is not OperatorState.PAUSED
    assert "handed_back" not in sink.types()


# -- stopping and overflow -------------------------------------------------------------------


async def test_a_stop_hands_a_caller_whose_operator_phone_rings_to_the_fallback() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, _, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    assert stasis.sessions[CALL].state is CallState.RINGING_OPERATOR
    assert await stasis.hand_back_waiting(grace=2) == 1
    assert ("hangup", f"{CALL}-op-op1-1") in ari.calls
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", CALL, "fallback")]
    assert operator(desk, "op1").state is OperatorState.AVAILABLE


async def test_a_stop_hands_a_blocked_caller_in_the_announcement_to_the_fallback() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, _, _, sink = build(ari, clock, blocked=True)
    await stasis._deps.screening.reload()
    stasis.on_event(citizen())
    await settle()
    stasis.sessions[CALL].post(StopNow())
    await settle()
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", CALL, "fallback")]
    assert ("stop_playback", f"{CALL}-blocked") in ari.calls


async def test_a_refused_hand_back_is_tried_until_the_channel_is_gone() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, _, _, sink = build(ari, clock)

    refusals = [AriError("POST", "/continue", 500, "busy")] * 3 + [
        NotFound("POST", "/continue", 404, "Channel not found")]

    async def refuse(channel_id: str, context: str | None = None, extension: str = "s",
                     priority: int = 1) -> None:
        ari.calls.append(("continue_in_dialplan", channel_id, context))
        raise refusals.pop(0)

    ari.continue_in_dialplan = refuse  # type: ignore[method-assign]
    stasis.on_event(citizen())
    await settle()
    stasis.sessions[CALL].post(StopNow())
    for _ in range(40):
        await asyncio.sleep(0.05)
        if not stasis.sessions:
            break
    assert len(ari.called("continue_in_dialplan")) == 4
    assert "caller gone" in sink.calls[-1].data["cause"]


async def test_overflow_when_nobody_can_answer_for_the_timeout() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, sink = build(ari, clock, queue={"no_operator_timeout": 20,
                                                         "wrapup": 0})
    await logged_out(desk)
    stasis.on_event(citizen())
    await settle()
    overflow = Overflow(queue, desk, stasis._deps.settings.queue, send=stasis.overflow)
    t0 = utcnow()
    assert overflow.check(100.0, t0) == []
    assert overflow.check(119.9, t0 + timedelta(seconds=19.9)) == []
    assert not overflow.active
    assert overflow.check(120.0, t0 + timedelta(seconds=20)) == [CALL]
    assert overflow.active
    await settle()
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", CALL, "fallback")]
    assert "overflow" in sink.types()
    desk.choose("op1", OperatorState.AVAILABLE, None, persist=False)
    overflow.check(121.0, t0 + timedelta(seconds=21))
    assert not overflow.active


async def test_a_caller_waiting_max_wait_overflows_though_operators_are_logged_in() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, sink = build(ari, clock, queue={"max_wait": 300, "wrapup": 0,
                                                         "overflow": "PJSIP/112@backup"})
    for op in ("op1", "op2"):
        desk.connected(op, f"other-{op}")  # both on calls: logged in, just busy
    stasis.on_event(citizen())
    await settle()
    [waiter] = queue.waiters()
    overflow = Overflow(queue, desk, stasis._deps.settings.queue, send=stasis.overflow)
    assert overflow.check(0.0, waiter.since + timedelta(seconds=299)) == []
    assert overflow.check(1.0, waiter.since + timedelta(seconds=300)) == [CALL]
    await settle()
    assert ("set_var", CALL, "SIAGA112_OVERFLOW_DIAL", "PJSIP/112@backup") in ari.calls
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", CALL, "overflow")]


async def test_a_stop_flushes_the_recording_note_of_a_call_that_just_ended(tmp_path: Any) -> None:
    """The recording's note is written a second or more after the hang-up (MixMonitor writes
    on); a stop in between notes it at once rather than lose it."""
    ari, clock = FakeAri(), FakeClock()
    stasis, _, _, sink = build(ari, clock, recording={"dir": str(tmp_path)})
    (tmp_path / f"{CALL}.wav").write_bytes(b"\0" * (44 + 16000))
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(StasisEnd(type="StasisEnd", channel=Channel(id=CALL)))
    await settle()
    assert "recording" not in sink.types()
    assert stasis.flush_after_end() == 1
    assert sink.calls[-1].type.value == "recording"
    assert sink.calls[-1].data["seconds"] == 1.0
    clock.advance(30)
    assert sink.types().count("recording") == 1


async def test_a_call_the_daemon_died_on_as_it_arrived_is_taken_in_afresh_by_the_resync() -> None:
    """Killed between StasisStart and the answer: the channel waits in our application,
    unanswered and untagged. The next resync must handle it, not leave it in Stasis."""

    class Arriving(FakeAri):
        async def channels(self) -> list[Channel]:
            self._call("channels")
            return [citizen().channel.model_copy(update={"state": "Ring"})]

    ari, clock = Arriving(alive={CALL}), FakeClock()
    stasis, desk, queue, sink = build(ari, clock)
    await logged_out(desk)
    await stasis.resync()
    await settle()
    assert ("answer", CALL) in ari.calls
    assert stasis.sessions[CALL].state is CallState.QUEUED
    assert sink.types()[:4] == ["arrived", "answered", "screened", "queued"]


# -- a PBX too slow to answer (a burst of calls) ----------------------------------------------


def dial_timed_out() -> tuple[FakeAri, FakeClock, Stasis, OperatorDesk, CallQueue, ListSink]:
    """ARI timed out on op1's originate (a PBX too busy to answer: the dial may still be
    carried out, late)."""
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, sink = build(ari, clock)
    ari.fail["originate"] = Unreachable("POST", "/channels", 0, "TimeoutError()")
    return ari, clock, stasis, desk, queue, sink


# The ring timeout (15 s) and the request timeout (5 s): how long a dial without an answer is
# waited for before it counts as not rung.
UNCONFIRMED_FOR = Settings().queue.ring_timeout + Settings().ari.request_timeout


async def test_a_dial_the_pbx_did_not_answer_in_time_pauses_nobody_and_waits_for_the_ring(
) -> None:
    """Nobody is paused for a PBX too slow to answer (paused, a burst once left one operator
    of eight at the desk), and the caller is not offered to the same phone again while the
    late dial may still ring it."""
    ari, clock, stasis, desk, queue, _ = dial_timed_out()
    with capture_logs() as logs:
        stasis.on_event(citizen())
        await settle()
    assert len(ari.called("originate")) == 1
    assert all(operator(desk, op).state is not OperatorState.PAUSED for op in ("op1", "op2"))
    assert stasis.sessions[CALL].state is CallState.RINGING_OPERATOR
    assert stasis.sessions[CALL].operator == "op1"
    assert not ari.called("continue_in_dialplan") and not ari.called("hangup")
    assert [e for e in logs if e["event"] == "operator_dial_timeout"]
    clock.advance(UNCONFIRMED_FOR - 1)
    await settle()
    assert len(ari.called("originate")) == 1 and not ari.called("hangup")


async def test_a_late_dial_that_rings_and_is_answered_connects_the_caller() -> None:
    """The dial was carried out late and op1 answers: that is this call's operator (once it
    was hung up as "answered too late" and op1 rung again for the same caller)."""
    ari, clock, stasis, desk, _, _ = dial_timed_out()
    stasis.on_event(citizen())
    await settle()
    del ari.fail["originate"]
    clock.advance(8)
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    assert not ari.called("hangup")
    assert [c[1] for c in ari.called("add_to_bridge") if c[1].startswith("siaga112-call-")]
    assert len(ari.called("originate")) == 1
    clock.advance(UNCONFIRMED_FOR)  # its timer, come and gone, changes nothing
    await settle()
    assert stasis.sessions[CALL].state is CallState.CONNECTED and not ari.called("hangup")


async def test_a_late_dial_that_rang_out_pauses_the_operator_as_any_unanswered_ring() -> None:
    ari, clock, stasis, desk, queue, _ = dial_timed_out()
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(ChannelDestroyed(type="ChannelDestroyed", cause=19,
                                     channel=Channel(id=f"{CALL}-op-op1-1")))
    await settle()
    assert operator(desk, "op1").state is OperatorState.PAUSED
    assert stasis.sessions[CALL].operator == "op2"  # the caller goes on to the next operator


async def test_a_dial_that_never_rings_gives_the_caller_back_their_place() -> None:
    """Nothing of the leg came for as long as the phone would have rung: the leg is hung up
    (should the dial be carried out later still), the caller keeps their place, nobody is
    paused, and the operator is offered calls again a moment later."""
    ari, clock, stasis, desk, queue, _ = dial_timed_out()
    await logged_out(desk)
    desk.choose("op1", OperatorState.AVAILABLE, None, persist=False)
    stasis.on_event(citizen())
    await settle()
    with capture_logs() as logs:
        clock.advance(UNCONFIRMED_FOR + 0.1)
        await settle()
    assert ("hangup", f"{CALL}-op-op1-1") in ari.calls
    assert [e for e in logs if e["event"] == "operator_ring_unconfirmed"]
    assert stasis.sessions[CALL].state is CallState.QUEUED and queue.position(CALL) == 1
    assert operator(desk, "op1").state is not OperatorState.PAUSED
    assert not ari.called("continue_in_dialplan")
    del ari.fail["originate"]
    clock.advance(2.0)
    await settle()
    assert len(ari.called("originate")) == 2
    assert stasis.sessions[CALL].state is CallState.RINGING_OPERATOR


async def test_a_dial_the_resync_finds_not_there_is_not_rung_not_missed() -> None:
    """A reconnect's resync finds the unconfirmed leg not there (cause 0): not rung, so op1
    is not paused and the caller keeps their place."""
    ari, clock, stasis, desk, queue, _ = dial_timed_out()
    await logged_out(desk)
    desk.choose("op1", OperatorState.AVAILABLE, None, persist=False)
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(ChannelDestroyed(type="ChannelDestroyed", cause=0,
                                     channel=Channel(id=f"{CALL}-op-op1-1")))
    await settle()
    assert operator(desk, "op1").state is not OperatorState.PAUSED
    session = stasis.sessions[CALL]
    assert session.state is CallState.QUEUED and queue.position(CALL) == 1
    assert session.operator is None and not session.has_timer("ring_unconfirmed")


async def test_a_holding_add_that_timed_out_but_was_done_is_not_a_fault() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, _ = build(ari, clock)
    await logged_out(desk)
    ari.fail["add_to_bridge"] = Unreachable("POST", "/bridges/h/addChannel", 0, "TimeoutError()")
    ari.members[legs.holding_bridge(CALL)] = [CALL]  # Asterisk did it, late
    stasis.on_event(citizen())
    await settle()
    assert len(ari.called("add_to_bridge")) == 1 and ari.called("get_bridge")
    assert stasis.sessions[CALL].state is CallState.QUEUED
    assert not ari.called("continue_in_dialplan")


async def test_a_holding_add_that_never_gets_through_hands_the_call_back() -> None:
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, _, sink = build(ari, clock)
    await logged_out(desk)
    ari.fail["add_to_bridge"] = Unreachable("POST", "/bridges/h/addChannel", 0, "TimeoutError()")
    stasis.on_event(citizen())
    await settle()
    assert len(ari.called("add_to_bridge")) == ATTEMPTS  # tried, looked for, tried again
    assert ari.called("continue_in_dialplan"), "fail open: the dialplan's queue takes it"


class SlowCallBridge(FakeAri):
    """Asterisk too busy to answer the call bridge's addChannel in time, `slow` times."""

    slow: int = 0

    async def add_to_bridge(self, bridge_id: str, channel_id: Any, role: str | None = None,
                            ) -> None:
        await super().add_to_bridge(bridge_id, channel_id, role)
        if bridge_id.startswith("siaga112-call-") and self.slow > 0:
            self.slow -= 1
            raise Unreachable("POST", f"/bridges/{bridge_id}/addChannel", 0, "TimeoutError()")


def answered_by_op1() -> StasisStart:
    return StasisStart(type="StasisStart", args=["operator", CALL],
                       channel=Channel(id=f"{CALL}-op-op1-1"))


async def test_an_operator_bridge_the_pbx_was_slow_to_make_is_asked_again_not_handed_back(
) -> None:
    """The operator answered; the PBX (a burst) did not answer the request that puts caller
    and operator together, twice. It is asked again: the call connects, nothing handed back."""
    ari, clock = SlowCallBridge(), FakeClock()
    ari.slow = 2
    stasis, desk, _, sink = build(ari, clock)
    with capture_logs() as logs:
        stasis.on_event(citizen())
        await settle()
        stasis.on_event(answered_by_op1())
        await settle()
    call_adds = [c for c in ari.called("add_to_bridge") if c[1].startswith("siaga112-call-")]
    assert len(call_adds) == 3, call_adds
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    assert not ari.called("continue_in_dialplan") and "handed_back" not in sink.types()
    assert [e["attempt"] for e in logs if e["event"] == "ari_slow"] == [1, 2]


async def test_an_operator_bridge_done_late_is_looked_for_before_asking_again() -> None:
    ari, clock = SlowCallBridge(), FakeClock()
    ari.slow = 1
    ari.members[f"siaga112-call-{CALL}"] = [CALL, f"{CALL}-op-op1-1"]  # done, answered late
    stasis, _, _, _ = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    assert len([c for c in ari.called("add_to_bridge")
                if c[1].startswith("siaga112-call-")]) == 1
    assert stasis.sessions[CALL].state is CallState.CONNECTED


async def test_a_silent_prompt_the_pbx_cannot_play_leaves_the_caller_waiting() -> None:
    """A quiet caller's "press 5 twice" prompt timed out: the caller stays in the queue,
    flagged silent, and is not handed back to the dialplan."""
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, queue, sink = build(ari, clock, silence={"enabled": True})
    await logged_out(desk)
    stasis.on_event(citizen())
    await settle()
    ari.fail["play"] = Unreachable("POST", "/channels/x/play", 0, "TimeoutError()")
    clock.advance(Settings().silence.silent_after)
    await settle()
    session = stasis.sessions[CALL]
    assert session.state is CallState.QUEUED and queue.position(CALL) == 1
    assert "silent" in session.flags
    assert not ari.called("continue_in_dialplan") and "handed_back" not in sink.types()


# -- what a call costs in requests to Asterisk (issue 13) -------------------------------------


async def test_arrival_to_an_operator_takes_four_ari_requests() -> None:
    """As the PBX hands the call over: answered by the dialplan, TALK_DETECT set there, no
    location. Into the holding bridge, dial the operator, make the call's bridge, and one
    request puts the citizen (out of the holding bridge) and the operator in it."""
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, _, _ = build(ari, clock, silence={"enabled": True})
    await stasis._deps.holding.ensure()  # once per connect (the resync), not per call
    ari.calls.clear()
    arriving = citizen()
    stasis.on_event(arriving.model_copy(
        update={"channel": arriving.channel.model_copy(update={"state": "Up"})}))
    await settle()
    stasis.on_event(StasisStart(type="StasisStart", args=["operator", CALL],
                                channel=Channel(id=f"{CALL}-op-op1-1")))
    await settle()
    assert stasis.sessions[CALL].state is CallState.CONNECTED
    assert [c[0] for c in ari.calls] == [
        "add_to_bridge", "originate", "create_bridge", "add_to_bridge"]
    assert ari.calls[-1] == ("add_to_bridge", f"siaga112-call-{CALL}",
                             f"{CALL},{CALL}-op-op1-1")


async def test_the_answered_step_says_who_answered_the_citizen() -> None:
    """The issue's answer goal (StasisStart -> answer) is read from the records: a StasisStart
    that finds the channel Up was answered by the dialplan before Stasis() (no request of
    ours); one still ringing is answered by the daemon's first request."""
    for state, by, requests in (("Up", "dialplan", []), ("Ring", "daemon", [("answer", CALL)])):
        ari, clock = FakeAri(), FakeClock()
        stasis, _, _, sink = build(ari, clock)
        await stasis._deps.holding.ensure()
        ari.calls.clear()
        arriving = citizen()
        stasis.on_event(arriving.model_copy(
            update={"channel": arriving.channel.model_copy(update={"state": state})}))
        await settle()
        answered = next(e for e in sink.calls if e.type is CallEventType.ANSWERED)
        assert answered.data["answered_by"] == by, state
        assert [c for c in ari.calls if c[0] == "answer"] == requests, state
        assert sink.types()[:4] == ["arrived", "answered", "screened", "queued"]


async def test_only_a_call_that_reached_its_bridge_destroys_it_at_the_end() -> None:
    """Most callers at load leave while waiting or while an operator's phone rings: no call
    bridge was made for them, and none is destroyed (a request each). One an operator
    answered has its bridge destroyed at the end."""

    ari, clock = FakeAri(), FakeClock()
    stasis, _, _, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    assert stasis.sessions[CALL].state is CallState.RINGING_OPERATOR
    stasis.on_event(StasisEnd(type="StasisEnd", channel=Channel(id=CALL)))
    await settle()
    assert sink.types()[-1] == "ended"
    assert ("hangup", f"{CALL}-op-op1-1") in ari.calls, "the ringing phone is hung up"
    assert not ari.called("destroy_bridge")

    ari, clock = FakeAri(), FakeClock()
    stasis, _, _, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    stasis.on_event(StasisEnd(type="StasisEnd", channel=Channel(id=CALL)))
    await settle()
    assert sink.types()[-1] == "ended"
    assert ari.called("destroy_bridge") == [("destroy_bridge", f"siaga112-call-{CALL}")]


# -- nobody left alone ---------------------------------------------------------------------------


async def test_a_caller_left_in_our_application_is_taken_in_at_the_second_look() -> None:
    """A citizen whose hang-up the PBX never carried out (or whose StasisStart was lost) sits
    in Stasis in our application with no session: the sweep sees them twice and takes them
    in: queued again, not hung up."""
    ari, clock = InStasis(alive={CALL}), FakeClock()
    stasis, desk, queue, _ = build(ari, clock)
    await logged_out(desk)
    await stasis.sweep()
    assert stasis.sessions == {}, "one look is not enough"
    await stasis.sweep()
    await settle()
    assert stasis.sessions[CALL].state is CallState.QUEUED and queue.position(CALL) == 1
    assert not ari.called("hangup") and not ari.called("continue_in_dialplan")


class InStasis(FakeAri):
    """The PBX's channels: the citizen CALL in Stasis (app_data as given) while alive."""

    app_data: str = "siaga112,citizen"
    app_name: str = "Stasis"

    async def channels(self) -> list[Channel]:
        self._call("channels")
        dialplan = DialplanCEP(context="emergency", exten="s", app_name=self.app_name,
                               app_data=self.app_data)
        return [citizen().channel.model_copy(update={"state": "Up", "dialplan": dialplan})
                for _ in self.alive]


async def test_a_stop_hands_a_caller_whose_stasisstart_it_never_read_to_the_fallback() -> None:
    """A caller put in our application as the daemon stopped (the StasisStart still in the
    socket when it closed) has no session: the stop's last look hands them to the fallback
    queue; a connected call stays for the next start."""
    ari, clock = InStasis(alive={CALL}), FakeClock()
    stasis, _, _, _ = build(ari, clock)
    assert await stasis.hand_back_waiting(grace=1) == 0
    assert await stasis.hand_back_strays() == 1
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", CALL, "fallback")]


class SlowContinue(InStasis):
    """A saturated PBX: the first continueInDialplan times out, the next is taken."""

    async def continue_in_dialplan(self, channel_id: str, context: str | None = None,
                                   extension: str = "s", priority: int = 1) -> None:
        self._call("continue_in_dialplan", channel_id, context)
        if len(self.called("continue_in_dialplan")) == 1:
            raise Unreachable("POST", f"/channels/{channel_id}/continue", 0, "TimeoutError()")


async def test_the_stops_last_look_asks_a_slow_pbx_again_rather_than_leave_the_caller() -> None:
    """A caller arriving at the stop while the PBX is saturated: the hand-back times out once.
    Asked once only, they would stay in our application with no daemon, in silence."""
    ari, clock = SlowContinue(alive={CALL}), FakeClock()
    stasis, _, _, _ = build(ari, clock)
    assert await stasis.hand_back_strays() == 1
    assert ari.called("continue_in_dialplan") == [("continue_in_dialplan", CALL, "fallback")] * 2


async def test_the_stops_last_look_leaves_a_connected_call_in_place() -> None:
    ari, clock = InStasis(alive={CALL}), FakeClock()
    stasis, _, _, _ = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    stasis.sessions[CALL].state = CallState.CONNECTED
    assert await stasis.hand_back_strays() == 0
    assert not ari.called("continue_in_dialplan")


async def test_a_caller_seen_once_is_not_taken_for_stranded() -> None:
    ari, clock = InStasis(alive={CALL}), FakeClock()
    stasis, _, _, _ = build(ari, clock)
    await stasis.sweep()
    ari.alive.clear()  # gone by the second look (a hang-up a moment late)
    await stasis.sweep()
    assert stasis.sessions == {}


async def test_a_call_that_just_ended_is_left_to_its_end() -> None:
    """Its session asked Asterisk for a hang-up or a hand-back a minute ago at most: a
    saturated PBX carries that out late (seen: more than 15 s); not stranded yet."""
    ari, clock = InStasis(alive={CALL}), FakeClock()
    stasis, _, _, _ = build(ari, clock)
    stasis._closed(CALL)
    await stasis.sweep()
    await stasis.sweep()
    assert stasis.sessions == {}


async def test_only_a_citizen_in_our_stasis_counts() -> None:
    """Back in the dialplan's queue, or a desk phone's code: none of the sweep's business."""
    for name, data in [("Queue", "siaga112-fallback"), ("Stasis", "siaga112,opcode,*11"),
                       ("Stasis", "siaga112-callback,citizen")]:
        ari, clock = InStasis(alive={CALL}), FakeClock()
        ari.app_name, ari.app_data = name, data
        stasis, _, _, _ = build(ari, clock)
        await stasis.sweep()
        await stasis.sweep()
        assert stasis.sessions == {}, (name, data)


class SlowHangup(FakeAri):
    """Asterisk too busy to answer a hang-up in time, `slow` times."""

    slow: int = 0

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await super().hangup(channel_id, reason)
        if self.slow > 0:
            self.slow -= 1
            raise Unreachable("DELETE", f"/channels/{channel_id}", 0, "TimeoutError()")


async def test_a_hang_up_the_pbx_was_slow_to_carry_out_is_asked_again() -> None:
    """The operator ended the call; hanging the citizen up timed out twice (a burst). It is
    asked again until done: the citizen is not left in our application after the end."""
    ari, clock = SlowHangup(alive={CALL}), FakeClock()
    stasis, _, _, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    ari.slow = 2
    stasis.on_event(ChannelDestroyed(type="ChannelDestroyed", cause=16,
                                     channel=Channel(id=f"{CALL}-op-op1-1")))
    await settle()
    # two timed out, the third was carried out
    assert [c for c in ari.called("hangup") if c[1] == CALL] == [("hangup", CALL)] * 3
    assert sink.types()[-1] == "ended"


class OperatorGoneAtBridge(FakeAri):
    """The operator's phone hung up (its test phone talks 1 s) before the PBX, saturated,
    made the call's bridge: the add finds the operator's channel gone."""

    async def add_to_bridge(self, bridge_id: str, channel_id: Any, role: str | None = None,
                            ) -> None:
        await super().add_to_bridge(bridge_id, channel_id, role)
        if bridge_id.startswith("siaga112-call-"):
            self.alive.discard(f"{CALL}-op-op1-1")
            raise AriError("POST", f"/bridges/{bridge_id}/addChannel", 400, "Channel not found")


async def test_an_operator_who_answered_and_left_before_the_bridge_is_not_paused() -> None:
    """Paused as 'gone' (a phone that does not answer), a 1000-caller burst paused all eight
    operators in its first seconds and every caller overflowed to the fallback queue."""
    ari, clock = OperatorGoneAtBridge(alive={CALL, f"{CALL}-op-op1-1"}), FakeClock()
    stasis, desk, queue, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    assert operator(desk, "op1").state is not OperatorState.PAUSED
    assert "operator_left" in sink.types() and "operator_no_answer" not in sink.types()
    session = stasis.sessions[CALL]
    # The caller keeps their place and is offered again (op2, then op1 again).
    assert session.state in (CallState.QUEUED, CallState.RINGING_OPERATOR)
    assert not ari.called("continue_in_dialplan")


async def test_an_operator_who_answered_while_we_were_away_is_put_through() -> None:
    """op1's desk phone answered while the events socket was down: its StasisStart was lost.
    The resync finds the leg up and puts the caller through (untold, op1 sat in silence and
    the caller waited on for good); the same StasisStart on the new socket is taken once."""
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, _, sink = build(ari, clock)
    stasis.on_event(citizen())
    await settle()
    session = stasis.sessions[CALL]
    assert session.state is CallState.RINGING_OPERATOR
    ari.alive = {CALL, f"{CALL}-op-op1-1"}  # both up: the desk phone has answered
    await stasis.resync()
    await settle()
    assert session.state is CallState.CONNECTED and session.operator == "op1"
    stasis.on_event(answered_by_op1())  # the socket's own, late
    await settle()
    assert session.state is CallState.CONNECTED
    assert ("hangup", f"{CALL}-op-op1-1") not in ari.calls
    assert sink.types().count("connected") == 1


async def test_a_ring_gone_while_we_were_away_pauses_nobody() -> None:
    """op1's leg ended while the socket was down (rang out, or answered and refused by
    Asterisk with our application away: not known which): op1 is not paused for it, the
    caller keeps their place."""
    ari, clock = FakeAri(), FakeClock()
    stasis, desk, _, sink = build(ari, clock)
    await logged_out(desk)
    desk.choose("op1", OperatorState.AVAILABLE, None, persist=False)
    stasis.on_event(citizen())
    await settle()
    ari.alive = {CALL}
    await stasis.resync()
    await settle()
    assert operator(desk, "op1").state is not OperatorState.PAUSED
    assert "operator_no_answer" not in sink.types()
    # Rung again (the resync rebuilt the desk: op1 is free at once).
    assert stasis.sessions[CALL].state is CallState.RINGING_OPERATOR
    assert [c[2] for c in ari.called("originate")] == [f"{CALL}-op-op1-1", f"{CALL}-op-op1-2"]


def second_citizen() -> StasisStart:
    ev = citizen()
    return ev.model_copy(update={"channel": ev.channel.model_copy(update={"id": CALL2})})



async def test_an_operator_who_hung_up_while_we_were_away_has_their_wrap_up() -> None:
    """op1 hung up on the caller while the events socket was down. The resync tells the
    session, which requeues the caller at the front (whether op1 meant to end the call is not
    known); op1 goes into wrap-up as after any call, and the caller rings op2. (Before, the
    resync had forgotten that op1 was on the call: op1 was free at once, no wrap-up, and the
    caller could be put straight back to the operator who had just hung up.)"""
    ari, clock = FakeAri(alive={CALL, f"{CALL}-op-op1-1"}), FakeClock()
    stasis, desk, _, sink = build(ari, clock, queue={"wrapup": 10})
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    session = stasis.sessions[CALL]
    assert session.state is CallState.CONNECTED and session.operator == "op1"
    ari.alive = {CALL}  # op1's leg ended while we were away
    await stasis.resync()
    await settle()
    assert operator(desk, "op1").state is OperatorState.WRAPUP
    assert session.state is CallState.RINGING_OPERATOR and session.operator == "op2"
    assert [c[2] for c in ari.called("originate")] == [f"{CALL}-op-op1-1", f"{CALL}-op-op2-2"]
    assert "operator_no_answer" not in sink.types()


async def test_an_operator_in_wrap_up_keeps_it_through_a_reconnect() -> None:
    """op1's call ended 1 s before the events socket reconnected: wrap-up is the operator's
    own time, which Asterisk knows nothing of; the resync keeps it, and the next caller rings
    op2, not op1."""
    ari, clock = FakeAri(alive={CALL, f"{CALL}-op-op1-1"}), FakeClock()
    stasis, desk, _, _ = build(ari, clock, queue={"wrapup": 10})
    await logged_out(desk)
    desk.choose("op1", OperatorState.AVAILABLE, None, persist=False)
    desk.choose("op2", OperatorState.AVAILABLE, None, persist=False)
    stasis.on_event(citizen())
    await settle()
    stasis.on_event(answered_by_op1())
    await settle()
    ari.alive = {f"{CALL}-op-op1-1"}
    stasis.on_event(StasisEnd(type="StasisEnd", channel=Channel(id=CALL)))  # the caller hung up
    await settle()
    assert operator(desk, "op1").state is OperatorState.WRAPUP
    ari.alive = set()
    await stasis.resync()
    await settle()
    assert operator(desk, "op1").state is OperatorState.WRAPUP
    ari.alive = {CALL2}
    stasis.on_event(second_citizen())
    await settle()
    assert stasis.sessions[CALL2].operator == "op2"


class ZombieCallBridge(FakeAri):
    """After a restart: the citizen alone in their call bridge (the operator hung up while
    we were away). Asterisk keeps a destroyed bridge's id taken for a while: a create with it
    answers 409 and the bridge itself 404 (the client's create then raises NotFound)."""

    async def channels(self) -> list[Channel]:
        self._call("channels")
        return [citizen().channel.model_copy(update={"state": "Up"})]

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> Any:
        if bridge_id == f"siaga112-call-{CALL}":
            self._call("create_bridge", bridge_id, kind)
            raise NotFound("GET", f"/bridges/{bridge_id}", 404, "Bridge not found")
        return await super().create_bridge(bridge_id, kind, name)


async def test_a_call_taken_back_is_bridged_again_in_a_bridge_of_its_own() -> None:
    """Killed while connected, the operator hung up while we were away: taken back, first in
    line, and put through to the next operator who answers, in a new bridge (the old id is
    still taken in Asterisk; reusing it, op1 answered every 4 s and the caller was never put
    through). The old bridge is ended, and the new one at the call's end."""

    plain = f"siaga112-call-{CALL}"
    ari, clock = ZombieCallBridge(alive={CALL, f"{CALL}-op-op1-1"}), FakeClock()
    ari.members[plain] = [CALL]
    stasis, _, _, sink = build(ari, clock)
    await stasis.resync()
    await settle()
    session = stasis.sessions[CALL]
    assert "requeued" in sink.types() and session.state is CallState.RINGING_OPERATOR
    assert ("destroy_bridge", plain) in ari.calls
    stasis.on_event(answered_by_op1())
    await settle()
    assert session.state is CallState.CONNECTED
    made = [c[1] for c in ari.called("create_bridge") if c[1].startswith(plain)]
    assert made[-1].startswith(f"{plain}~") and plain not in made
    assert ari.called("add_to_bridge")[-1] == ("add_to_bridge", made[-1],
                                               f"{CALL},{CALL}-op-op1-1")
    # The old bridge is ended only after the two are through: the operator never waits on it.
    joined = ari.calls.index(("add_to_bridge", made[-1], f"{CALL},{CALL}-op-op1-1"))
    assert ("destroy_bridge", plain) in ari.calls[joined:]
    assert legs.call_of_bridge(made[-1]) == CALL
    stasis.on_event(StasisEnd(type="StasisEnd", channel=Channel(id=CALL)))
    await settle()
    assert ari.called("destroy_bridge")[-1] == ("destroy_bridge", made[-1])
    assert not ari.called("continue_in_dialplan")


def test_a_calls_bridges_all_name_the_call_and_never_repeat() -> None:
    ids = {legs.fresh_call_bridge(CALL) for _ in range(100)}
    assert len(ids) == 100 and legs.call_bridge(CALL) not in ids
    assert {legs.call_of_bridge(b) for b in ids} == {CALL}
    assert legs.call_of_bridge(legs.call_bridge(f"n1-{CALL}")) == f"n1-{CALL}"
    assert legs.call_of_bridge("siaga112-holding-3") is None
