"""The desk's log lines: one line per state change at info, not two of the same change."""

from __future__ import annotations

from collections.abc import Callable

from structlog.testing import capture_logs
from tests.fakes import FakeAri, ListSink

from siaga112.model import OperatorState
from siaga112.operators import OperatorDesk


def levels(change: Callable[[], object]) -> list[tuple[str, str, str]]:
    with capture_logs() as logs:
        change()
    return [(e["log_level"], e["was"], e["state"]) for e in logs if e["event"] == "operator_state"]


def test_an_offer_and_its_answer_leave_the_info_lines_to_the_call() -> None:
    """The call's call_state ringing_operator and connected lines name the operator; the
    operator's own ringing and on_call lines are at debug. Every other change stays at info,
    among them a resync's on_call of an operator the daemon found on a call after a restart."""
    desk = OperatorDesk(["op1", "op2"], FakeAri(), ListSink(), wrapup=0, start_logged_in=True,
                        on_change=lambda: None)
    assert levels(lambda: desk.ringing("op1", "c1")) == [("debug", "available", "ringing")]
    assert levels(lambda: desk.connected("op1", "c1")) == [("debug", "ringing", "on_call")]
    assert levels(lambda: desk.released("op1", "c1")) == [("info", "on_call", "available")]
    assert levels(lambda: desk.connected("op2", "c2")) == [("info", "available", "on_call")]
    assert levels(lambda: desk.choose("op1", OperatorState.PAUSED, "break", True)) == [
        ("info", "available", "paused")]
    # A phone that rang out, or died in a call, is paused from what it was doing.
    desk.choose("op1", OperatorState.AVAILABLE, None, True)
    desk.ringing("op1", "c3")
    assert levels(lambda: desk.no_answer("op1", "c3")) == [("info", "ringing", "paused")]
    desk.released("op2", "c2")
    desk.connected("op2", "c4")
    assert levels(lambda: desk.no_answer("op2", "c4", "phone_lost")) == [
        ("info", "on_call", "paused")]
