"""The end of a call: its disposition, the legs we close, the record's last events; and the
ways a call leaves us alive: handed back to the dialplan on a fault of ours (fail open), on a
graceful stop, or to the overflow target. A hand-back is tried again until Asterisk takes it or
the channel is gone: a call is never left in our application with nobody handling it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from siaga112 import legs
from siaga112.ari.client import AriError, channel_gone
from siaga112.ari.retry import patiently
from siaga112.model import CallEvent, CallEventType, CallState, Disposition
from siaga112.wav import seconds_of_pcm_wav

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)

HAND_BACK_BACKOFF_MAX = 2.0  # seconds between tries of a refused hand-back
HAND_BACK_GIVE_UP = 120.0  # a channel Asterisk neither takes back nor reports gone (seconds)


class Ending:
    def __init__(self, call: CallSession) -> None:
        self.call = call

    def default_disposition(self) -> Disposition:
        call = self.call
        if call.disposition is not None:
            return call.disposition
        if call.state is CallState.CONNECTED:
            return Disposition.GENUINE
        if call.state is CallState.REJECTED:
            return Disposition.BLOCKED
        return Disposition.ABANDONED

    async def end(self, disposition: Disposition, by: str, hangup_citizen: bool = False,
                  node_gone: bool = False) -> None:
        call = self.call
        if call.state is CallState.ENDED:
            return
        was = call.state
        call.transition(CallState.ENDED, disposition=disposition.value, by=by)
        self._release(was)
        legs_to_close = [c for c in [call.operator_channel, *call.agencies.channels()] if c]
        if hangup_citizen:
            legs_to_close.append(call.call_id)
        if not node_gone:  # (a dead node has nothing left to close, and would not answer)
            for channel_id in legs_to_close:
                await self.hangup_quietly(channel_id)
            if call.bridge_made:
                await self.destroy_bridge_quietly(call.bridge_id)
        call.emit(CallEventType.ENDED, disposition=disposition.value, hangup_by=by,
                  cause=call.hangup_cause)
        if call.deps.metrics is not None:
            call.deps.metrics.call_ended(disposition)
        if call.deps.settings.recording.enabled:
            self._note_recording_later(-1, 10)

    async def node_lost(self, node: str) -> None:
        """The cluster node the call lived on died, and the call with it (stasis.py): the
        record closes `dropped`, so the callback list has the caller; the operator is free."""
        self.call.hangup_cause = f"node {node} lost"
        await self.end(Disposition.DROPPED, by="system", node_gone=True)

    async def agency_left(self, while_away: bool = False) -> None:
        """An agency hung up or could not be reached. With neither operator nor agency left
        (nor one being dialled), the citizen is alone: the call is over. Unless the agency's
        leg ended while we were away (while_away): we cannot tell whether it meant to end the
        call, so the citizen goes back to the front of the queue, as for an operator."""
        call = self.call
        if call.operator_channel is None and not (call.agencies.joined()
                                                  or call.agencies.dialling()):
            if while_away:
                await call.waiting.requeue_front("agency_gone")
                return
            await self.end(self.default_disposition(), by="agency", hangup_citizen=True)

    def _release(self, was: CallState) -> None:
        """The queue and the operator let go of the call."""
        call = self.call
        call.deps.queue.remove(call.call_id)
        call.waiting.stop()
        if call.operator is None:
            return
        if was is CallState.RINGING_OPERATOR:
            # The caller left while the desk phone rang: no call to wrap up.
            call.deps.desk.cancel_offer(call.operator, call.call_id)
        elif was is CallState.CONNECTED:
            call.deps.desk.released(call.operator, call.call_id)

    # -- leaving alive: to the dialplan --------------------------------------------------------

    async def hand_back(self, reason: str) -> None:
        """Fail open: a fault of ours sends the citizen to the dialplan's fallback queue."""
        self.call.emit(CallEventType.HANDED_BACK, reason=reason[:300])
        await self.leave_to_dialplan(legs.FALLBACK_CONTEXT, Disposition.FALLBACK,
                                      "handed back to dialplan")

    async def on_stop(self) -> None:
        """A graceful stop: a call not yet with a person goes to the fallback queue; a
        connected call stays in its bridge and is taken back by the next start."""
        call = self.call
        if call.state in (CallState.CONNECTED, CallState.ENDED):
            return
        call.emit(CallEventType.HANDED_BACK, reason="daemon stopping")
        await self.leave_to_dialplan(legs.FALLBACK_CONTEXT, Disposition.FALLBACK, "daemon stopping")

    async def leave_to_dialplan(self, context: str, disposition: Disposition, cause: str) -> None:
        call = self.call
        was = call.state
        call.state = CallState.ENDED  # from now on nothing of ours acts on the call
        if call.operator_channel and was is CallState.RINGING_OPERATOR:
            await self.hangup_quietly(call.operator_channel)
        self._release(was)
        for playback in (call.arrival.announcement, call.waiting.prompt):
            if playback is not None:
                try:
                    await call.deps.ari.stop_playback(playback)
                except AriError:
                    pass
        outcome = await self._continue(context)
        if outcome == "gone":
            cause = f"caller gone before the {cause}"
        elif outcome == "node_lost":
            disposition, cause = Disposition.DROPPED, f"node lost before the {cause}"
        log.warning("call_left_to_dialplan", context=context, cause=cause, outcome=outcome)
        call.emit(CallEventType.ENDED, disposition=disposition.value, hangup_by="system",
                  cause=cause)

    async def _continue(self, context: str) -> str:
        """continueInDialplan until Asterisk takes it ("done") or the channel is gone."""
        call = self.call
        delay, waited = 0.1, 0.0
        while True:
            try:
                await call.deps.ari.continue_in_dialplan(call.call_id, context)
                return "done"
            except AriError as exc:
                if channel_gone(exc):
                    return "gone"
                if call.deps.node_lost(call.call_id):
                    return "node_lost"  # the call went with its node: nothing to hand back
                if waited >= HAND_BACK_GIVE_UP:
                    log.critical("call_not_handed_back", error=str(exc), waited=waited)
                    return "refused"
                log.error("hand_back_failed", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, HAND_BACK_BACKOFF_MAX)

    # -- small helpers ------------------------------------------------------------------------

    async def destroy_bridge_quietly(self, bridge_id: str) -> None:
        """End a bridge of the call's; gone already (or never made) is fine."""
        try:
            await self.call.deps.ari.destroy_bridge(bridge_id)
        except AriError:
            pass

    async def hangup_quietly(self, channel_id: str) -> None:
        """Hang a leg up; gone already is fine. A PBX too busy to answer in time (a burst) is
        asked again: a citizen whose hang-up was lost would stay in our application after
        the call's end, in silence, with nobody handling them (seen in the 1000-caller
        burst: 4 callers left so)."""
        call = self.call
        try:
            await patiently("hangup", lambda: call.deps.ari.hangup(channel_id),
                            done=lambda: self._gone(channel_id))
        except AriError as exc:
            if not channel_gone(exc):
                log.critical("leg_not_hung_up", channel=channel_id, error=str(exc))

    async def _gone(self, channel_id: str) -> bool:
        return not await self.call.alive(channel_id)

    def _note_recording_later(self, size: int, looks: int) -> None:
        self.call.deps.after_end.later(
            self.call.call_id, 1.0, lambda: self._recorded(size, looks),
            final=lambda: self._recorded(-2, 1))

    def _recorded(self, last_size: int = -1, looks: int = 10) -> None:
        """Note the recording in the record once MixMonitor is done with it: the file is there
        and its size held still for a second (MixMonitor's thread writes on after hang-up)."""
        call = self.call
        path = Path(call.deps.settings.recording.dir) / f"{call.call_id}.wav"
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        if (size < 0 or size != last_size) and looks > 1:
            self._note_recording_later(size, looks - 1)
            return
        if size < 0:
            log.warning("recording_missing", path=str(path), call_id=call.call_id)
            return
        call.deps.sink.call_event(
            CallEvent(call_id=call.call_id, seq=call.next_seq(), type=CallEventType.RECORDING,
                      data={"path": str(path), "seconds": round(seconds_of_pcm_wav(size), 2)})
        )
