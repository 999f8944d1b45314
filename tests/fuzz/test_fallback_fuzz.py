"""Fallback-journal lines (what the dialplan writes when the daemon is away: ten fields split
by `|`, the caller ID in base64), fed anything: the importer's parsing of a file
(fallback_import.py, as import_once calls it) never fails, gives one entry per line, and each
line it takes becomes a call's events that can be journalled: one ENDED, one call id, the
same event ids when read again (a line read twice is stored once).

(fallback_import.py is another engineer's: this only calls what it has.)"""

from __future__ import annotations

import base64
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from siaga112.fallback_import import FallbackImporter
from siaga112.model import CallEventType
from tests.fuzz.strategies import FUZZ, HOSTILE_TEXT, ID_LIKE, NASTY, spoiled

_tmp = tempfile.TemporaryDirectory(prefix="siaga112-fuzz-",
                                   dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
ROOT = Path(_tmp.name)
(ROOT / "recordings").mkdir()
(ROOT / "recordings" / "1764480000.7.wav").write_bytes(b"RIFF" + b"\0" * 100)


class NoJournal:
    def journal_events(self, events: Any) -> bool:
        raise AssertionError("parsing must not journal")


IMPORTER = FallbackImporter(ROOT / "calls.log", NoJournal(), ROOT / "recordings")

# A line as the dialplan writes it, from usual values; then one or two fields made hostile.
GOOD = [
    ["1764480000.7", "1764480000.8", "1764480000.9-op-op1-1", "../../etc/passwd", ""],
    ["", "1764480000", "0", "-1", "99999999999999999999", "1e9", "١٧٦٤٤٨٠٠٠٠"],
    ["", "1764480005", "x"],
    ["", "1764480060", "١"],
    ["mobile", "landline", ""],
    ["trunk-mobile", "trunk-landline", ""],
    ["op1", "", "Local/op1@x", "op1|op2"],
    ["CONTINUE", "TIMEOUT", "", "FULL"],
    ["SUCCESS", "FAILED", ""],
    [base64.b64encode(raw).decode() for raw in (b"081234567890", b"+6281234567890",
                                                 b"\xff\xfe", b"\x00", b"anonymous")]
    + ["!!notbase64", "", "=" * 9],
]
# Every combination of the usual values would be too many: a fixed sample of them, as lists
# of fields, spoiled in up to two places (a field replaced by hostile text, or removed).
GOOD_LINES = [[random.Random(n).choice(values) for values in GOOD] for n in range(300)]
FIELD = st.one_of(HOSTILE_TEXT, ID_LIKE, st.sampled_from(NASTY),
                  st.sampled_from(["|", "||", "a|b"]))


def _line(fields: list[Any]) -> str:
    return "|".join(str(f) for f in fields)


LINE = st.one_of(
    st.builds(_line, st.sampled_from(GOOD_LINES)),
    st.builds(_line, spoiled(GOOD_LINES, FIELD)),
    st.builds(_line, spoiled(GOOD_LINES, FIELD)),
    st.builds(lambda f, extra: _line([*f, extra]), st.sampled_from(GOOD_LINES), HOSTILE_TEXT),
    HOSTILE_TEXT,
)


@FUZZ
@given(lines=st.lists(LINE, min_size=1, max_size=3))
def test_a_fallback_line_is_taken_or_refused_never_a_crash(lines: list[str]) -> None:
    path = ROOT / "calls.log.importing-1"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
    parsed = IMPORTER._parse_file(path)
    texts = [t for t in path.read_text(errors="replace").splitlines() if t.strip()]
    assert [p.text for p in parsed] == texts
    assert [p.number for p in parsed] == sorted(p.number for p in parsed)
    for entry in parsed:
        if entry.events is None:
            continue
        events = entry.events
        assert events, entry.text
        assert [e.type for e in events].count(CallEventType.ENDED) == 1
        assert {e.call_id for e in events} == {entry.text.split("|")[0]}
        for e in events:
            e.model_dump_json()  # can be journalled
        again = IMPORTER._events(entry.text)
        assert again is not None
        assert [e.event_id for e in again] == [e.event_id for e in events]
