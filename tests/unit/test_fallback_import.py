"""The fallback journal's lines (dialplan [fallback-record]) become call records."""

import base64
from pathlib import Path

from tests.fakes import ListSink

from siaga112.fallback_import import FallbackImporter


def line(call_id: str, member: str = "op2", stasis: str = "FAILED", caller: str = "081234567890",
         fields: int = 10) -> str:
    b64 = base64.b64encode(caller.encode()).decode()
    parts = [call_id, "1764160000", "1764160001", "1764160031", "mobile", "trunk-mobile", member,
             "", stasis, b64]
    return "|".join(parts[:fields])


async def test_lines_become_records_once(tmp_path: Path) -> None:
    journal = tmp_path / "calls.log"
    journal.write_text(line("1.1") + "\n" + line("1.2", member="") + "\n")
    sink = ListSink()
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
    # The same line again (a crash between reading and removing) gives the same event ids.
    journal.write_text(line("1.1") + "\n")
    again = ListSink()
    await FallbackImporter(journal, again, tmp_path).import_once()
    assert {e.event_id for e in again.calls} <= {e.event_id for e in first}


async def test_a_handed_back_call_adds_only_what_the_daemon_did_not_see(tmp_path: Path) -> None:
    journal = tmp_path / "calls.log"
    journal.write_text(line("2.1", stasis="SUCCESS") + "\n")
    sink = ListSink()
    await FallbackImporter(journal, sink, tmp_path).import_once()
    assert [e.type.value for e in sink.calls] == ["connected", "ended"]


async def test_a_garbled_line_is_set_aside_and_named(tmp_path: Path) -> None:
    journal = tmp_path / "calls.log"
    journal.write_text(line("3.1", fields=4) + "\n" + line("3.2") + "\n")
    sink = ListSink()
    importer = FallbackImporter(journal, sink, tmp_path)
    assert await importer.import_once() == 1
    assert importer.rejected == 1
    assert "3.1" in (tmp_path / "rejected.log").read_text()
