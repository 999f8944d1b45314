"""Taking a call back after a (re)connect, from what the resync found in Asterisk: a waiting
caller waits on; a connected call stays connected; a call whose operator left while we were
away (and no agency is with the citizen) goes back to the front of the queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from siaga112.call.items import Resume
from siaga112.model import CallEventType, CallState, utcnow

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)


async def take_back(call: CallSession, r: Resume) -> None:
    if r.since is not None:
        call.arrived_at = r.since
    # Number this daemon's events after the previous one's: from the milliseconds since the
    # call arrived (no daemon emits one event per millisecond), so a record read in seq order
    # does not interleave the two daemons' steps.
    call.restart_seq(int((utcnow() - call.arrived_at).total_seconds() * 1000))
    call.emit(CallEventType.RESYNCED, state=r.state.value, operator=r.operator)
    log.info("call_taken_back", state=r.state.value, operator=r.operator,
             requeue=r.requeue_reason)
    call.priority = r.priority
    call.flags = list(r.flags)
    call.waiting.talked = True  # no silence check for a call we take back
    if r.state is CallState.CONNECTED:
        call.state = CallState.CONNECTED
        call.operator = r.operator
        call.operator_channel = r.operator_channel
        if r.operator is not None:
            call.deps.desk.connected(r.operator, call.call_id)
        for channel_id, dispatch_id in r.agency_channels.items():
            call.agencies.adopt(channel_id, dispatch_id, joined=True)
        for channel_id, dispatch_id in r.agency_dialling.items():
            call.agencies.adopt(channel_id, dispatch_id, joined=False)
        call.operator_leg.media.start()
        return
    if r.requeue_reason is not None:
        await call.waiting.requeue_front(r.requeue_reason)
        return
    await call.waiting.enqueue()
