"""Caller-ID parsing (callerid.normalise) takes whatever a carrier or a spoofer sends: it never
raises, keeps a bounded printable copy, and yields either a real E.164 number or none."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from siaga112.callerid import MAX_RAW, CallerIdProblem, normalise
from tests.fuzz.strategies import FUZZ, HOSTILE_TEXT

E164 = re.compile(r"\+62[1-9][0-9]{6,11}")

NUMBERISH = st.builds(
    lambda prefix, digits, sep: prefix + sep.join(digits),
    st.sampled_from(["", "+", "+62", "62", "0", "00", "+1", "08", "0254", "+62 0"]),
    st.lists(st.text("0123456789", min_size=1, max_size=4), max_size=6),
    st.sampled_from(["", " ", "-", ".", "(", ")", "\u00a0", "\x00", "/"]),
)


@FUZZ
@given(raw=st.one_of(st.none(), HOSTILE_TEXT, NUMBERISH))
@example(raw="08" + "9" * 65_000 + "\x00")
@example(raw="\ud800081234567890")
def test_normalise_never_raises_and_keeps_only_a_safe_copy(raw: str | None) -> None:
    cid = normalise(raw)
    assert len(cid.raw) <= MAX_RAW
    assert cid.raw.isprintable()
    cid.raw.encode("utf-8")  # no lone surrogate: it can be stored and sent
    if cid.e164 is None:
        assert cid.problem is not CallerIdProblem.NONE
        assert not cid.usable
    else:
        assert cid.problem is CallerIdProblem.NONE
        assert E164.fullmatch(cid.e164), cid.e164
        # E.164 is a fixed point: normalising it again gives itself
        assert normalise(cid.e164).e164 == cid.e164
