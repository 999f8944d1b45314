"""The fallback journal's lines (dialplan [fallback-record]) become call records; a line leaves
the file only once the records journal has taken all its events."""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.fallback_import import FallbackImporter
from siaga112.model import CallEvent
from siaga112.records.policy import BlockPolicy
from siaga112.records.writer import RecordWriter
from siaga112.settings import DatabaseSettings, PolicySettings


@dataclass
class FakeJournal:
    """Takes events until `room` lines' worth is used; then says no, like a full journal."""

    room: int = 1_000_000
    calls: list[CallEvent] = field(default_factory=list)

    def journal_events(self, events: Sequence[CallEvent]) -> bool:
        if self.room <= 0:
            return False
        self.room -= 1
        self.calls.extend(events)
        return True


def files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def line(call_id: str, member: str = "op2", stasis: str = "FAILED", caller: str = "081234567890",
         fields: int = 10) -> str:
    b64 = base64.b64encode(caller.encode()).decode()
    parts = [call_id, "1764160000", "1764160001", "1764160031", "mobile", "trunk-mobile", member,
             "", stasis, b64]
    return "|".join(parts[:fields])


async def test_lines_become_records_once(tmp_path: Path) -> None:
    journal = tmp_path / "calls.log"
    journal.write_text(line("1.1") + "\n" + line("1.2", member="") + "\n")
    sink = FakeJournal()
    importer = FallbackImporter(journal, sink, tmp_path)
    assert await importer.import_once() == 2
    first = [e for e in sink.calls if e.call_id == "1.1"]
    assert [e.type.value for e in first] == ["arrived", "answered", "connected", "ended"]
    assert first[0].data["caller"] == "+6281234567890"
    assert first[2].data["operator"] == "op2"
    assert first[-1].data["disposition"] == "fallback"
    second = [e for e in sink.calls if e.call_id == "1.2"]
    assert second[-1].data["disposition"] == "abandoned"  # nobody answered in the queue
    assert not journal.exists()
    assert files(tmp_path, "calls.log*") == []
    # The same line again (a crash between reading and removing) gives the same event ids.
    journal.write_text(line("1.1") + "\n")
    again = FakeJournal()
    await FallbackImporter(journal, again, tmp_path).import_once()
    assert {e.event_id for e in again.calls} <= {e.event_id for e in first}


async def test_a_handed_back_call_adds_only_what_the_daemon_did_not_see(tmp_path: Path) -> None:
    journal = tmp_path / "calls.log"
    journal.write_text(line("2.1", stasis="SUCCESS") + "\n")
    sink = FakeJournal()
    await FallbackImporter(journal, sink, tmp_path).import_once()
    assert [e.type.value for e in sink.calls] == ["connected", "ended"]


async def test_a_garbled_line_is_set_aside_and_named(tmp_path: Path) -> None:
    journal = tmp_path / "calls.log"
    journal.write_text(line("3.1", fields=4) + "\n" + line("3.2") + "\n"
                       + line("3.3").replace("1764160031", "9" * 30) + "\n")
    sink = FakeJournal()
    importer = FallbackImporter(journal, sink, tmp_path)
    assert await importer.import_once() == 2  # a time out of range is taken as "now"
    assert importer.rejected == 1
    assert "3.1" in (tmp_path / "rejected.log").read_text()


async def test_a_line_stays_until_the_journal_takes_it(tmp_path: Path) -> None:
    journal = tmp_path / "calls.log"
    journal.write_text("".join(line(f"4.{n}") + "\n" for n in range(5)))
    sink = FakeJournal(room=2)
    importer = FallbackImporter(journal, sink, tmp_path)
    assert await importer.import_once() == 2
    assert importer.deferred == 3
    (left,) = files(tmp_path, "calls.log.importing-*")
    assert [x.split("|")[0] for x in left.read_text().splitlines()] == ["4.2", "4.3", "4.4"]
    # New calls meanwhile; the journal has room again: the rest, then the new ones.
    journal.write_text(line("4.5") + "\n")
    sink.room = 100
    assert await importer.import_once() == 4
    assert files(tmp_path, "calls.log*") == []
    assert sorted({e.call_id for e in sink.calls}) == [f"4.{n}" for n in range(6)]


async def test_a_full_records_journal_drops_nothing(tmp_path: Path) -> None:
    """With the real writer on a small journal and no database: "imported" counts only what
    the journal holds, no event is dropped, the rest of the file waits."""
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    writer = RecordWriter(engine, tmp_path / "state" / "journal",
                          DatabaseSettings(journal_max_bytes=4096),
                          BlockPolicy(engine, PolicySettings()))
    journal = tmp_path / "calls.log"
    journal.write_text("".join(line(f"5.{n}") + "\n" for n in range(20)))
    importer = FallbackImporter(journal, writer, tmp_path)
    imported = await importer.import_once()
    assert 0 < imported < 20
    assert writer.dropped == 0
    assert writer.backlog == 4 * imported  # arrived, answered, connected, ended
    assert imported + importer.deferred == 20
    assert writer.problems == ["journal_full"]
    await engine.dispose()


async def test_file_reads_and_writes_are_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    real_read = Path.read_text

    def read_text(self: Path, *args: object, **kw: object) -> str:
        threads.add(threading.get_ident())
        return real_read(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    journal = tmp_path / "calls.log"
    journal.write_text(line("6.1") + "\n")
    assert await FallbackImporter(journal, FakeJournal(), tmp_path).import_once() == 1
    assert threads and loop_thread not in threads
