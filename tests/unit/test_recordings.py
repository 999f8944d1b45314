import os
import time
from pathlib import Path

from structlog.testing import capture_logs

from siaga112.recordings import RetentionSweeper


def test_recordings_past_retention_are_deleted_and_the_rest_kept(tmp_path: Path) -> None:
    now = time.time()
    old = tmp_path / "1700000000.1.wav"
    new = tmp_path / "1700000000.2.wav"
    other = tmp_path / "notes.txt"
    for f in (old, new, other):
        f.write_bytes(b"RIFF")
    os.utime(old, (now - 91 * 86400, now - 91 * 86400))
    os.utime(other, (now - 91 * 86400, now - 91 * 86400))
    with capture_logs() as logs:
        assert RetentionSweeper(tmp_path, retention_days=90).sweep(now) == 1
    assert not old.exists()
    assert new.exists() and other.exists()
    assert logs[0]["event"] == "recordings_expired"


def test_a_missing_directory_is_logged_not_raised(tmp_path: Path) -> None:
    assert RetentionSweeper(tmp_path / "nowhere", retention_days=1).sweep() == 0
