"""Asking a saturated Asterisk again. A request that timed out (Unreachable: a burst of calls
keeps the PBX busy) may have been carried out all the same: look first, and ask again, a few
times, before the caller's session takes it as a fault (and hands the call back)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from siaga112.ari.client import Unreachable

log = structlog.get_logger(__name__)

ATTEMPTS = 6  # each waits up to ari.request_timeout (5 s): 30 s of a saturated PBX
T = TypeVar("T")


async def patiently(what: str, request: Callable[[], Awaitable[T]],
                    done: Callable[[], Awaitable[bool]] | None = None,
                    attempts: int = ATTEMPTS) -> T | None:
    """request(), asked again while Asterisk does not answer in time; None when `done` found
    it carried out after a timeout. The last attempt's Unreachable is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return await request()
        except Unreachable as exc:
            log.warning("ari_slow", request=what, attempt=attempt, error=str(exc))
            if attempt == attempts:
                raise
            if done is not None:
                try:
                    if await done():
                        return None
                except Unreachable:
                    pass
    return None  # not reached: the loop returns or raises
