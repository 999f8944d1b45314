"""The journal alone: it opens whatever it finds, hands torn lines back apart, and its sizes
are the disk's (a full disk is a real tmpfs, see test_journal_full_disk.py for the writer)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from siaga112.records.journal import Journal

from .diskfull import Tmpfs, fill


def lines(n: int, prefix: str = "r") -> list[bytes]:
    return [f'{{"n":"{prefix}{i}"}}'.encode() for i in range(n)]


def drain(j: Journal, limit: int = 1000) -> list[bytes]:
    batch = j.read(limit)
    j.commit(batch)
    return batch.lines


def test_stray_files_do_not_stop_it(tmp_path: Path) -> None:
    d = tmp_path / "journal"
    j = Journal(d, 1 << 20)
    assert j.append(b'{"n":1}')
    j.close()
    (d / "rejected.jsonl").write_text('{"refused": true}\n')
    (d / "foo.txt").write_text("notes\n")
    (d / "12.jsonl").write_text('{"not":"ours"}\n')  # not ten digits: not a segment
    (d / "0000000099.jsonl").mkdir()  # a segment's name, but a directory

    again = Journal(d, 1 << 20)
    assert sorted(again.foreign) == ["0000000099.jsonl", "12.jsonl", "foo.txt", "rejected.jsonl"]
    assert again.backlog == 1
    assert again.append(b'{"n":2}')
    assert drain(again) == [b'{"n":1}', b'{"n":2}']
    # What is not ours is left alone.
    assert (d / "foo.txt").read_text() == "notes\n"
    assert (d / "rejected.jsonl").exists() and (d / "12.jsonl").exists()


def test_a_torn_tail_is_handed_back_apart(tmp_path: Path) -> None:
    d = tmp_path / "journal"
    j = Journal(d, 1 << 20)
    for line in lines(3):
        j.append(line)
    j.close()
    seg = next(d.glob("*.jsonl"))
    with open(seg, "ab") as fh:
        fh.write(b'{"n":"half')  # a crash in the middle of a write
    again = Journal(d, 1 << 20)
    again.append(b'{"n":"after"}')
    batch = again.read(100)
    assert batch.lines == [*lines(3), b'{"n":"after"}']
    assert batch.torn == [b'{"n":"half']
    again.commit(batch)
    assert again.read(100).lines == [] and again.backlog == 0
    assert not seg.exists()


def test_commit_deletes_only_what_is_read(tmp_path: Path) -> None:
    d = tmp_path / "journal"
    j = Journal(d, 1 << 20, segment_bytes=64)  # 6 lines a segment
    for line in lines(10):
        assert j.append(line)
    assert len(list(d.glob("*.jsonl"))) == 2
    first = j.read(7)
    for line in lines(3, "late"):
        assert j.append(line)
    j.commit(first)
    assert len(list(d.glob("*.jsonl"))) == 2  # the first went, the second holds 3 unread
    j.close()
    again = Journal(d, 1 << 20, segment_bytes=64)
    assert again.backlog == 6
    assert again.read(100).lines == lines(10)[7:] + lines(3, "late")


def test_sync_covers_segments_rotated_since(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal", 1 << 20, segment_bytes=32)
    assert not j.unsynced
    for line in lines(8):
        j.append(line)
    assert j.unsynced
    j.sync()
    assert not j.unsynced
    j.append(b"{}")
    assert j.unsynced


def test_the_bound_counts_bytes_on_disk(tmp_path: Path) -> None:
    d = tmp_path / "journal"
    j = Journal(d, 100, segment_bytes=40)
    taken = [line for line in lines(20) if j.append(line)]
    on_disk = sum(p.stat().st_size for p in d.glob("*.jsonl"))
    assert j.bytes_on_disk == on_disk <= 100
    assert len(taken) < 20
    assert not j.append_many([b"x" * 10, b"y" * 200])  # all or nothing
    assert drain(j) == taken


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_leaves_no_half_line_and_sizes_true(tmp_path: Path) -> None:
    with Tmpfs(tmp_path / "disk", "64k") as disk:
        d = disk / "journal"
        j = Journal(d, 1 << 20, segment_bytes=16 << 10)
        filler = fill(disk, leave=4096 + 100)  # room for about one page of journal
        taken: list[bytes] = []
        refused = 0
        for i in range(200):
            line = f'{{"n":{i},"pad":"{"p" * 90}"}}'.encode()
            try:
                if j.append(line):
                    taken.append(line)
            except OSError:
                refused += 1
        assert refused > 0 and taken
        on_disk = sum(p.stat().st_size for p in d.glob("*.jsonl"))
        assert j.bytes_on_disk == on_disk  # what it counts is what the disk holds
        batch = j.read(1000)
        assert batch.lines == taken and batch.torn == []  # no half line, nothing unacknowledged
        # Space comes back: appends go on after the last whole line.
        filler.unlink()
        assert j.append(b'{"n":"after"}')
        j.commit(batch)
        assert drain(j) == [b'{"n":"after"}']
        j.close()
        assert Journal(d, 1 << 20).backlog == 0


def test_an_unreadable_committed_file_replays_everything(tmp_path: Path) -> None:
    d = tmp_path / "journal"
    j = Journal(d, 1 << 20)
    for line in lines(3):
        j.append(line)
    drain(j)
    j.append(b'{"n":"x"}')
    j.close()
    (d / "committed").write_bytes(b"\xff\xfe garbage")
    again = Journal(d, 1 << 20)
    assert again.read(10).lines == [b'{"n":"x"}']  # committed segments are gone already


def test_the_committed_position_is_written_in_place_and_read_back(tmp_path: Path) -> None:
    d = tmp_path / "journal"
    j = Journal(d, 1 << 20)
    for line in lines(5):
        j.append(line)
    j.commit(j.read(2))
    inode = (d / "committed").stat().st_ino
    j.commit(j.read(1))
    assert (d / "committed").stat().st_ino == inode  # the same file: no new one each commit
    assert sorted(p.name for p in d.iterdir()) == ["0000000001.jsonl", "committed"]
    j.close()
    again = Journal(d, 1 << 20)
    assert again.backlog == 2
    assert again.read(10).lines == lines(5)[3:]


def test_a_torn_committed_line_replays_everything_left_and_never_skips_a_line(
    tmp_path: Path,
) -> None:
    """A crash or a power cut in the middle of the write in place: every mix of the old line
    and the new one that is neither reads as unreadable, and the journal replays all it has
    (the store is idempotent); none of them can move the position past a line."""
    d = tmp_path / "journal"
    j = Journal(d, 1 << 20)
    for line in lines(5):
        j.append(line)
    j.commit(j.read(1))
    old = (d / "committed").read_bytes()
    j.commit(j.read(3))
    new = (d / "committed").read_bytes()
    j.close()
    assert len(old) == len(new) and old != new
    torn_ones = {new[:cut] + old[cut:] for cut in range(1, len(new))} - {old, new}
    assert torn_ones
    for torn in sorted(torn_ones):
        (d / "committed").write_bytes(torn)
        again = Journal(d, 1 << 20)
        assert again.read(10).lines == lines(5), torn
        again.close()


def test_the_older_committed_line_is_read(tmp_path: Path) -> None:
    """A journal left by a version that wrote "SEGMENT OFFSET" (renamed whole each time)."""
    d = tmp_path / "journal"
    j = Journal(d, 1 << 20)
    for line in lines(5):
        j.append(line)
    j.close()
    (d / "committed").write_text(f"1 {sum(len(x) + 1 for x in lines(5)[:2])}\n")
    again = Journal(d, 1 << 20)
    assert again.backlog == 3
    batch = again.read(10)
    assert batch.lines == lines(5)[2:]
    again.commit(batch)  # and the first write of this run replaces it with its own line
    again.close()
    assert len((d / "committed").read_bytes().split()) == 3
