"""The one definition of an id (ids.py), an extra beside each input's own 10,000-case test
(FUZZ_EXTRA cases): the pydantic types and the functions agree, and whatever they accept is
safe as a topic level, a record and a log value. Channel variables read back from Asterisk on
a resync are checked and never raise (test_ari_fuzz.py reads them from events too)."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from siaga112 import ids
from tests.fuzz.strategies import FUZZ_EXTRA, HOSTILE_TEXT, ID_LIKE, NASTY

ID = TypeAdapter(ids.Id)
CALL_ID = TypeAdapter(ids.CallId)
NOTE = TypeAdapter(ids.Note)


def _safe(value: str) -> None:
    assert value and len(value) <= ids.ID_MAX
    assert not any(c in value for c in "/+#\x00 ")
    assert value.isascii() and value.isprintable()


@FUZZ_EXTRA
@given(value=st.one_of(HOSTILE_TEXT, ID_LIKE))
def test_the_id_types_and_functions_agree_and_accept_only_safe_ids(value: str) -> None:
    for adapter, check, top in ((ID, ids.is_id, ids.ID_MAX),
                                (CALL_ID, ids.is_call_id, ids.CALL_ID_MAX)):
        try:
            got = adapter.validate_python(value)
        except ValidationError:
            assert not check(value)
            assert ids.problem(value, top) is not None
        else:
            assert got == value and check(value)
            assert ids.problem(value, top) is None
            _safe(got)
    try:
        note = NOTE.validate_python(value)
    except ValidationError:
        assert not ids.is_note(value)
    else:
        assert ids.is_note(note) and "\x00" not in note
        note.encode("utf-8")


TAG_VALUE = st.one_of(st.sampled_from(NASTY), HOSTILE_TEXT,
                      st.sampled_from(["2025-01-01T08:00:00+00:00", "2025-01-01", "1", "0",
                                       "blocked_bypass,silent_emergency", ",,,", "mobile",
                                       "trunk-mobile"]),
                      st.integers(), st.none())
TAGS = st.dictionaries(
    st.sampled_from(["SIAGA112_ARRIVED", "SIAGA112_PRIORITY", "SIAGA112_FLAGS",
                     "SIAGA112_LINE", "SIAGA112_TRUNK", "SIAGA112_DISPATCH", "OTHER"]),
    TAG_VALUE, max_size=7,
)


@FUZZ_EXTRA
@given(variables=st.one_of(st.none(), TAGS))
@example(variables={"SIAGA112_FLAGS": "a," * 40_000, "SIAGA112_ARRIVED": "9" * 65_000})
def test_channel_tags_never_raise_and_keep_only_checked_values(
    variables: dict[str, Any] | None,
) -> None:
    tags = ids.channel_tags(variables)
    assert tags.arrived is None or tags.arrived.tzinfo is not None
    assert len(tags.flags) <= ids.FLAGS_MAX
    for f in tags.flags:
        _safe(f)
    for value in (tags.line, tags.trunk):
        if value:
            _safe(value)
    dispatch = ids.dispatch_tag((variables or {}).get("SIAGA112_DISPATCH"))
    if dispatch:
        _safe(dispatch)
    given_names = set(variables or {})
    assert set(tags.refused) <= given_names
