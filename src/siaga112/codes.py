"""Desk-phone codes an operator sends as DTMF during a call, read digit by digit.

`*2NN` bring agency NN onto the call; `*3CC` set incident category CC; `*7` prank; `*8` ghost;
`*6` instant recall (hear the last seconds of the call again), `#` back to the call.
A code that does not exist is named in the log and changes nothing on the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum


class CodeKind(StrEnum):
    AGENCY = "agency"
    CATEGORY = "category"
    PRANK = "prank"
    GHOST = "ghost"
    RECALL = "recall"  # *6
    RETURN = "return"  # #: back to the call (from a recall)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Code:
    kind: CodeKind
    arg: str = ""
    raw: str = ""


_ARG_DIGITS = {"2": CodeKind.AGENCY, "3": CodeKind.CATEGORY}
_SINGLE = {"6": CodeKind.RECALL, "7": CodeKind.PRANK, "8": CodeKind.GHOST}


class CodeReader:
    """Feed digits; get a Code when one is complete. Digits more than `gap` seconds apart start
    over, so a stray key press does not swallow the next code."""

    def __init__(self, gap: float = 4.0) -> None:
        self._gap = gap
        self._buf = ""
        self._last = 0.0

    def feed(self, digit: str, now: float | None = None) -> Code | None:
        now = time.monotonic() if now is None else now
        if self._buf and now - self._last > self._gap:
            self._buf = ""
        self._last = now
        if digit == "*":
            self._buf = "*"
            return None
        if not self._buf:
            if digit == "#":  # on its own (not inside a code): back to the call
                return Code(CodeKind.RETURN, raw="#")
            return None  # digits outside a code: ordinary key presses, ignored
        self._buf += digit
        buf = self._buf
        if len(buf) == 2:
            if buf[1] in _SINGLE:
                self._buf = ""
                return Code(_SINGLE[buf[1]], raw=buf)
            if buf[1] not in _ARG_DIGITS:
                self._buf = ""
                return Code(CodeKind.UNKNOWN, raw=buf)
            return None
        if len(buf) == 4:
            self._buf = ""
            arg = buf[2:]
            if not arg.isdigit():
                return Code(CodeKind.UNKNOWN, raw=buf)
            return Code(_ARG_DIGITS[buf[1]], arg=arg, raw=buf)
        return None
