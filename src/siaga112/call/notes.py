"""Notes a call leaves after its end: the recording's path and length, written once MixMonitor
is done with the file. They outlive the call's session, so they are kept here: a graceful stop
flushes them (looks at each file once more, now) before the records writer stops, so nothing
is lost to a stop."""

from __future__ import annotations

from collections.abc import Callable

from siaga112.call.clock import Clock, Handle


class AfterEnd:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pending: dict[str, tuple[Handle, Callable[[], None]]] = {}

    def later(self, key: str, delay: float, step: Callable[[], None],
              final: Callable[[], None]) -> None:
        """Run step after delay; `final` is what a flush runs instead (the last look)."""
        def run() -> None:
            self._pending.pop(key, None)
            step()

        old = self._pending.pop(key, None)
        if old is not None:
            old[0].cancel()
        self._pending[key] = (self._clock.call_later(delay, run), final)

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Run every pending note's final look now; returns how many."""
        pending, self._pending = self._pending, {}
        for handle, final in pending.values():
            handle.cancel()
            final()
        return len(pending)
