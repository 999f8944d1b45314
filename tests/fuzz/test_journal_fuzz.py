"""Journal lines: every line the record journal can hand back (whole, cut, garbage, hostile
JSON, events with hostile fields) decodes as an event or is named unreadable by the writer
(records/writer.py, its decoding as the writer calls it), never a crash. And the journal's
reading side, fed any directory content (segments of such lines and torn tails, a corrupt
`committed` file, files that are not segments), always opens, hands every line back once,
drains to an empty backlog and reopens empty.

(journal.py and writer.py are another engineer's: this only calls what they have.)"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.model import CallEvent, CallEventType, OperatorEvent, OperatorState
from siaga112.records.journal import Journal
from siaga112.records.policy import BlockPolicy
from siaga112.records.writer import RecordWriter
from siaga112.settings import DatabaseSettings, PolicySettings
from tests.fuzz.strategies import FUZZ, FUZZ_EXTRA, HOSTILE_TEXT, JSON_VALUE, dumps, spoiled

T0 = datetime(2025, 1, 1, tzinfo=UTC)

# Whole lines as the writer journals them, built once; the cases vary them (cheap to draw).
BASE_CALL = [CallEvent(call_id="1764480000.1", seq=n, type=kind, at=T0,
                       data={"agency": "01", "dispatch_id": "1764480000.1-01-1a2b3c4d"})
             .model_dump(mode="json") for n, kind in enumerate(sorted(CallEventType))]
BASE_OPERATOR = [OperatorEvent(operator="op1", state=state, reason="tea", at=T0)
                 .model_dump(mode="json") for state in sorted(OperatorState)]


def _line(kind: str, event: dict[str, Any]) -> bytes:
    return dumps({"k": kind, "e": event})


LINE = st.one_of(
    st.builds(lambda e: _line("c", e), st.sampled_from(BASE_CALL)),
    st.builds(lambda e: _line("o", e), st.sampled_from(BASE_OPERATOR)),
    # a journal record spoiled in up to two places: its kind, a field of its event, its data
    st.builds(dumps, spoiled([{"k": "c", "e": e} for e in BASE_CALL]
                             + [{"k": "o", "e": e} for e in BASE_OPERATOR])),
    st.builds(lambda k, v: dumps({"k": k, "e": v}), HOSTILE_TEXT, JSON_VALUE),
    st.builds(dumps, JSON_VALUE),
    st.binary(min_size=1, max_size=80).map(lambda b: b.replace(b"\n", b"")),  # blank too
)
TORN_TAIL = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"") or b"{")
SEGMENT = st.tuples(st.lists(LINE, max_size=4), st.one_of(st.just(b""), TORN_TAIL))
# A whole line cut anywhere (a torn write), or with a byte changed (a bad disk).
CUT_LINE = st.builds(lambda line, at: line[:at], LINE, st.integers(0, 400))
FLIPPED_LINE = st.builds(lambda line, at, b: line[:at] + bytes([b]) + line[at + 1:], LINE,
                         st.integers(0, 400), st.integers(0, 255))
COMMITTED = st.one_of(st.none(), st.just(b"0 0\n"), st.binary(max_size=16),
                      st.sampled_from([b"1 0\n", b"0 999999\n", b"-1 -1\n", b"x y\n", b"\x00"]))
FOREIGN = st.lists(st.sampled_from(["rejected.jsonl", "12.jsonl", "0000000001.jsonl.tmp",
                                    "committed.tmp", "README", ".hidden", "00000000ab.jsonl",
                                    "dir:0000000099.jsonl"]), max_size=3, unique=True)

# In memory when the machine has it: thousands of small directories, quickly.
_tmp = tempfile.TemporaryDirectory(prefix="siaga112-fuzz-",
                                   dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
_engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
WRITER = RecordWriter(_engine, Path(_tmp.name) / "writer" / "journal",
                      DatabaseSettings.model_validate({}),
                      BlockPolicy(_engine, PolicySettings()))


def _build(root: Path, segments: list[tuple[list[bytes], bytes]], committed: bytes | None,
           foreign: list[str]) -> tuple[int, int]:
    """The directory; returns (whole non-blank lines, torn tails) written in segments."""
    whole = torn = 0
    for n, (lines, tail) in enumerate(segments, 1):
        data = b"".join(line + b"\n" for line in lines) + tail
        (root / f"{n:010d}.jsonl").write_bytes(data)
        whole += sum(1 for line in lines if line.strip())
        torn += 1 if tail else 0
    if committed is not None:
        (root / "committed").write_bytes(committed)
    for name in foreign:
        if name.startswith("dir:"):
            (root / name[4:]).mkdir()
        else:
            (root / name).write_bytes(b"not a segment\n")
    return whole, torn


@FUZZ
@given(lines=st.lists(st.one_of(LINE, CUT_LINE, FLIPPED_LINE), min_size=1, max_size=3))
def test_every_journal_line_decodes_or_is_named_unreadable(lines: list[bytes]) -> None:
    items, bad = WRITER._decode(lines)
    assert sorted([line for line, _ in items] + [line for line, _ in bad]) == sorted(lines)
    for _, reason in bad:
        assert reason.startswith("unreadable") and len(reason) < 400


@FUZZ_EXTRA
@given(segments=st.lists(SEGMENT, max_size=3), committed=COMMITTED, foreign=FOREIGN,
       limit=st.integers(1, 7))
def test_the_journal_opens_on_anything_and_hands_back_every_line_once(
    segments: list[tuple[list[bytes], bytes]], committed: bytes | None, foreign: list[str],
    limit: int,
) -> None:
    with tempfile.TemporaryDirectory(dir=_tmp.name) as tmp:
        root = Path(tmp) / "journal"
        root.mkdir()
        whole, torn = _build(root, segments, committed, foreign)
        pos = _position(committed)
        replay_all = pos is None or pos[0] <= 0 or pos == (1, 0)  # else some was committed
        journal = Journal(root, max_bytes=1 << 20)
        got: list[bytes] = []
        got_torn = 0
        for _ in range(100):
            batch = journal.read(limit)
            if not batch.lines and not batch.torn:
                break
            got += batch.lines
            got_torn += len(batch.torn)
            items, bad = WRITER._decode(batch.lines)
            assert len(items) + len(bad) == len(batch.lines)
            assert all(reason for _line, reason in bad)
            journal.commit(batch)
        else:
            raise AssertionError("the journal never drained")
        if replay_all:
            assert (len(got), got_torn) == (whole, torn)
        assert journal.backlog == 0
        journal.close()
        again = Journal(root, max_bytes=1 << 20)
        assert again.backlog == 0 and not again.read(10).lines
        again.close()


def _position(committed: bytes | None) -> tuple[int, int] | None:
    """The committed file as the journal would take it, or None when it is not one."""
    try:
        seg, off = (committed or b"").decode().split()
        return int(seg), int(off)
    except ValueError:
        return None


def test_a_blank_line_in_a_segment_does_not_stay_in_the_backlog(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    root.mkdir()
    (root / "0000000001.jsonl").write_bytes(b'{"k":"c","e":{}}\n\n \n')
    journal = Journal(root, max_bytes=1 << 20)
    batch = journal.read(10)
    journal.commit(batch)
    assert journal.backlog == 0
    journal.close()
