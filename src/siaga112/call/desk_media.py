"""The operator's desk phone, watched while it is connected to a citizen. A phone that loses
power or its network sends no BYE; Asterisk keeps its leg up, and the citizen would sit in a
silent bridge with nobody on it for as long as they held on. So, every half of
`queue.desk_media_timeout`, the session asks Asterisk how many media packets have come from the
operator's leg (GET /channels/{id}/rtp_statistics, one request); a count that has not moved for
the whole timeout means the phone is gone, and the operator's leg hands the citizen back to the
front of the queue (operator_leg.py, `phone_lost`).

Nothing is decided on a failed request (the PBX busy, a leg that just ended) or an answer that
is not a count: the next look decides. A leg without media to count (404 "RTP info not
found", 403 for a channel type without RTP) is not watched. A phone that put the call on hold
(ChannelHold) may send nothing until it takes it back, so it is given
`queue.desk_media_timeout_held` instead. The timer runs in the call's session, in order with
its events: a call that ended or changed operator meanwhile stops the watch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from siaga112.ari.client import AriError, NotFound
from siaga112.model import CallState

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)

DESK_MEDIA = "desk_media"  # the session's timer
MIN_LOOK = 0.5  # s between two looks, at the least
UNSUPPORTED = 403  # ARI's answer for a channel type without RTP (a Local channel, say)


class DeskMediaWatch:
    def __init__(self, call: CallSession) -> None:
        self.call = call
        self._channel: str | None = None  # the operator leg watched
        self._count = 0  # packets received by the last look
        self._since = 0.0  # when the count last moved (monotonic)
        self.held = False

    @property
    def _limit(self) -> float:
        queue = self.call.deps.settings.queue
        return queue.desk_media_timeout_held if self.held else queue.desk_media_timeout

    def start(self) -> None:
        """The operator is connected (answered, or taken back after a reconnect)."""
        call = self.call
        self._channel = call.operator_channel
        self._count, self._since, self.held = 0, call.clock.monotonic(), False
        if self._channel is None or not call.deps.settings.queue.desk_media_timeout:
            return
        self._next()

    def hold(self, held: bool) -> None:
        """ChannelHold / ChannelUnhold of the watched leg: the timeout counts from now, and the
        next look is due by the new one."""
        self.held = held
        self._since = self.call.clock.monotonic()
        if self.call.has_timer(DESK_MEDIA):
            self._next()

    def _next(self) -> None:
        self.call.timer(DESK_MEDIA, max(MIN_LOOK, self._limit / 2))

    async def look(self) -> None:
        """The timer: one look at the packets received. Calls phone_lost when none came for
        the timeout."""
        call = self.call
        channel = self._channel
        if (channel is None or call.state is not CallState.CONNECTED
                or call.operator_channel != channel):
            return  # the call moved on; a new operator starts a new watch
        try:
            count = (await call.deps.ari.rtp_statistics(channel)).rxcount
        except NotFound:
            return  # the leg is gone (its ChannelDestroyed says how), or has no media at all
        except AriError as exc:
            if exc.status == UNSUPPORTED:  # not a phone that has RTP: nothing to watch
                log.info("desk_media_unwatchable", channel=channel, error=str(exc))
                return
            log.info("desk_media_not_read", channel=channel, error=str(exc))
            self._next()
            return
        except ValidationError as exc:  # an answer that is not a count: no decision on it
            log.warning("desk_media_bad_answer", channel=channel,
                        error=str(exc.errors(include_url=False))[:300])
            self._next()
            return
        now = call.clock.monotonic()
        if count != self._count:
            self._count, self._since = count, now
        elif now - self._since >= self._limit:
            await call.operator_leg.phone_lost(round(now - self._since, 1), self.held)
            return
        self._next()
