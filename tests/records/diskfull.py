"""A real full disk for the journal's tests: a small tmpfs mounted for the test (root only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType


class Tmpfs:
    """``with Tmpfs(path, "256k") as mounted:`` a tmpfs of that size at path, unmounted after."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs",
                        str(self.path)], check=True)
        return self.path

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking all the space of disk but about `leave` bytes; delete it to give it back."""
    filler = disk / "filler"
    with open(filler, "ab") as fh:
        while (room := free_bytes(disk) - leave) > 0:
            try:
                fh.write(b"\0" * min(room, 1 << 20))
                fh.flush()
            except OSError:
                break
    return filler
