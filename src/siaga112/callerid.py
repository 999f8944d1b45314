"""Caller ID normalisation: what carriers send, to E.164.

Mobile carriers send `+628…`, `628…` or `08…`; the PSTN sends `0254…` (Serang) or any Indonesian
area code. Anything else — withheld, anonymous, letters, unicode, 200 characters, SQL — is kept
as received for the record (cut to a safe length) and normalises to None: the call goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_RAW = 64  # what we keep of a caller ID as received
_WITHHELD = {"", "anonymous", "restricted", "unknown", "unavailable", "private", "withheld"}
_SEPARATORS = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"\+?[0-9]+")


class CallerIdProblem(StrEnum):
    NONE = "none"
    WITHHELD = "withheld"
    GARBAGE = "garbage"  # characters that are not a phone number
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NOT_INDONESIAN = "not_indonesian"


@dataclass(frozen=True)
class CallerId:
    raw: str  # as received, cut to MAX_RAW characters, control characters removed
    e164: str | None  # "+62…" or None
    problem: CallerIdProblem

    @property
    def usable(self) -> bool:
        return self.e164 is not None


def _printable(s: str) -> str:
    return "".join(ch for ch in s if ch.isprintable())[:MAX_RAW]


def normalise(raw: str | None) -> CallerId:
    """Normalise a caller ID; never raises."""
    received = _printable(raw or "")
    if received.strip().lower() in _WITHHELD:
        return CallerId(received, None, CallerIdProblem.WITHHELD)
    compact = _SEPARATORS.sub("", received)
    if not _DIGITS.fullmatch(compact):
        return CallerId(received, None, CallerIdProblem.GARBAGE)
    if compact.startswith("+"):
        digits = compact[1:]
        if not digits.startswith("62"):
            return CallerId(received, None, CallerIdProblem.NOT_INDONESIAN)
        national = digits[2:]
    elif compact.startswith("62"):
        national = compact[2:]
    elif compact.startswith("0"):
        national = compact[1:]
    else:
        return CallerId(received, None, CallerIdProblem.NOT_INDONESIAN)
    national = national.lstrip("0")
    # Indonesian national significant numbers: 7 to 12 digits (fixed 7-10, mobile 9-12).
    if len(national) < 7:
        return CallerId(received, None, CallerIdProblem.TOO_SHORT)
    if len(national) > 12:
        return CallerId(received, None, CallerIdProblem.TOO_LONG)
    return CallerId(received, "+62" + national, CallerIdProblem.NONE)
