"""Escalation: when nobody can answer, waiting callers do not wait for ever.

With no operator able to take a call (every one logged out, paused or unreachable) for
`queue.no_operator_timeout` seconds, every waiting caller goes to the overflow target (the
dialplan's fallback queue, where every desk phone rings, or a backup centre), and so does each
new caller while that lasts; a caller who has waited `queue.max_wait` goes there too. Checked
once a second; `check()` takes the time as an argument so tests drive it at exact instants.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import structlog

from siaga112.model import utcnow
from siaga112.operators import OperatorDesk
from siaga112.queue import CallQueue
from siaga112.settings import QueueSettings

log = structlog.get_logger(__name__)

TICK = 1.0


class Overflow:
    def __init__(
        self,
        queue: CallQueue,
        desk: OperatorDesk,
        settings: QueueSettings,
        send: Callable[[str, str], None],  # (call id, reason): that call goes to the target
    ) -> None:
        self._queue = queue
        self._desk = desk
        self._settings = settings
        self._send = send
        self._nobody_since: float | None = None
        self.active_since: datetime | None = None  # nobody can answer for the timeout and more
        self.sent_total = 0

    @property
    def active(self) -> bool:
        return self.active_since is not None

    def check(self, now: float, wall: datetime) -> list[str]:
        """One look: returns the call ids sent to the overflow target."""
        if self._desk.anyone_can_answer():
            if self.active_since is not None:
                log.info("overflow_over")
            self._nobody_since = None
            self.active_since = None
        elif self._nobody_since is None:
            self._nobody_since = now
        nobody = (self._nobody_since is not None
                  and now - self._nobody_since >= self._settings.no_operator_timeout)
        if nobody and self.active_since is None:
            self.active_since = wall
            log.warning("overflow_no_operator", seconds=self._settings.no_operator_timeout)
        sent = []
        for w in self._queue.waiters():
            waited = (wall - w.since).total_seconds()
            if nobody or waited >= self._settings.max_wait:
                reason = "no_operator" if nobody else "max_wait"
                self._queue.remove(w.call_id)  # sent once; the call's session does the rest
                self._send(w.call_id, reason)
                sent.append(w.call_id)
        self.sent_total += len(sent)
        return sent

    async def tick(self) -> None:
        """One look now (run by the supervisor every TICK seconds)."""
        self.check(time.monotonic(), utcnow())
