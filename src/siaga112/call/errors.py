"""Why a command on a live call (from the HTTP API) was not carried out: one exception class per
reason, raised through the command's future (`Command.done.set_exception`) or by
`Stasis.command`. The API maps each to its HTTP status once (api/errors.py)."""

from __future__ import annotations

from siaga112.model import CallState


class CommandError(Exception):
    """A command the call could not carry out; str() is the reason, for people."""


class CallNotLive(CommandError):
    """The daemon has no live call with this id (it ended, or never was)."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} is not live")
        self.call_id = call_id


class CallNotConnected(CommandError):
    """An agency can only join a call an operator has answered."""

    def __init__(self, call_id: str, state: CallState) -> None:
        super().__init__(f"call is {state.value}, not connected")
        self.call_id = call_id
        self.state = state


class UnknownAgency(CommandError):
    def __init__(self, code: str) -> None:
        super().__init__(f"unknown agency {code}")
        self.code = code


class UnknownCategory(CommandError):
    def __init__(self, category: str) -> None:
        super().__init__(f"unknown category {category}")
        self.category = category


class CallNotResponding(CommandError):
    """The call's session did not take the command in time (it is busy or stuck)."""

    def __init__(self, call_id: str, kind: str) -> None:
        super().__init__(f"call {call_id!r} did not take the {kind} command in time")
        self.call_id = call_id
        self.kind = kind
