"""The test PBX deletes its old test-call recordings at each `stack up` (devstack/pbx.py), and
only those: a recording of the run going on, and anything that is not a file, stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

from siaga112_testkit.devstack.pbx import RECORDINGS_KEPT, Pbx


def test_old_recordings_go_and_recent_ones_stay(tmp_path: Path) -> None:
    pbx = Pbx(repo=tmp_path, state_dir=tmp_path / "state", root=tmp_path / "root")
    (pbx.recordings / "recall").mkdir(parents=True)
    old = time.time() - RECORDINGS_KEPT - 60
    names = {"old.wav": old, "recall/old-recall.wav": old, "new.wav": time.time()}
    for name, mtime in names.items():
        path = pbx.recordings / name
        path.write_bytes(b"RIFF")
        os.utime(path, (mtime, mtime))
    (pbx.recordings / "a-dir").mkdir()
    os.utime(pbx.recordings / "a-dir", (old, old))

    assert pbx.prune_recordings() == 2
    left = sorted(str(p.relative_to(pbx.recordings)) for p in pbx.recordings.rglob("*"))
    assert left == ["a-dir", "new.wav", "recall"]
    assert pbx.prune_recordings() == 0


def test_no_recordings_directory_yet_is_nothing_to_do(tmp_path: Path) -> None:
    assert Pbx(repo=tmp_path, state_dir=tmp_path, root=tmp_path / "none").prune_recordings() == 0
