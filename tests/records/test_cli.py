from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import Disposition
from siaga112.records.apply import store
from siaga112.records.cli import main
from siaga112.records.policy import BlockPolicy

from .factory import call_events


async def _cli(db_url: str, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    env = dict(
        os.environ, SIAGA112_DATABASE__URL=db_url, SIAGA112_CONFIG=str(tmp_path / "none.toml")
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "siaga112.records.cli",
        *argv,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_lists_as_json(
    db_url: str, clean: AsyncEngine, policy: BlockPolicy, tmp_path: Path
) -> None:
    for i in range(11):
        evs = call_events(f"c{i}", caller="+6281222222222", disposition=Disposition.PRANK)
        await store(clean, policy, evs)

    rc, out, err = await _cli(db_url, tmp_path, "calls", "list", "--json", "--limit", "3")
    assert rc == 0, err
    calls = json.loads(out)
    assert len(calls) == 3 and {c["disposition"] for c in calls} == {"prank"}

    rc, out, err = await _cli(db_url, tmp_path, "blocklist", "list", "--json")
    assert rc == 0, err
    [block] = json.loads(out)
    assert (block["number"], block["by"], block["active"]) == ("+6281222222222", "policy", True)

    rc, out, err = await _cli(db_url, tmp_path, "referrals", "export", "--format", "json")
    assert rc == 0, err
    assert [r["number"] for r in json.loads(out)] == ["+6281222222222"]
    rc, out, err = await _cli(db_url, tmp_path, "referrals", "export", "--format", "json")
    assert json.loads(out) == []  # exported once


async def test_blocklist_add_remove_and_bad_number(
    db_url: str, clean: AsyncEngine, tmp_path: Path
) -> None:
    rc, _, err = await _cli(db_url, tmp_path, "blocklist", "add", "+6283333333333", "--hours", "2")
    assert rc == 0, err
    rc, out, _ = await _cli(db_url, tmp_path, "blocklist", "list")
    assert "+6283333333333" in out
    rc, _, err = await _cli(db_url, tmp_path, "blocklist", "remove", "+6283333333333")
    assert rc == 0, err
    rc, out, _ = await _cli(db_url, tmp_path, "blocklist", "list", "--json")
    assert json.loads(out) == []
    rc, _, err = await _cli(db_url, tmp_path, "blocklist", "add", "12345")
    assert rc == 2 and "E.164" in err


async def test_complaints_file_answer_list(
    db_url: str,
    clean: AsyncEngine,
    policy: BlockPolicy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await store(clean, policy, call_events("c1"))
    monkeypatch.setenv("SIAGA112_DATABASE__URL", db_url)
    monkeypatch.setenv("SIAGA112_CONFIG", str(tmp_path / "none.toml"))

    async def _cli(*argv: str) -> tuple[int, str, str]:
        """In this process (a thread: main runs its own event loop), for speed."""
        rc = await asyncio.to_thread(main, argv)
        out, err = capsys.readouterr()
        return rc, out, err

    rc, out, err = await _cli(
        "complaints",
        "file",
        "--caller",
        "+6281111",
        "--text",
        "late",
        "--by",
        "sup1",
        "--call-id",
        "c1",
        "--json",
    )
    assert rc == 0, err
    [filed] = json.loads(out)
    assert (filed["call_id"], filed["text"], filed["answered_at"]) == ("c1", "late", None)

    rc, out, err = await _cli(
        "complaints",
        "answer",
        str(filed["id"]),
        "--answer",
        "sorry",
        "--by",
        "sup2",
    )
    assert rc == 0, err
    rc, out, err = await _cli("complaints", "list", "--open", "--json")
    assert (rc, json.loads(out)) == (0, [])
    rc, out, err = await _cli("complaints", "list")
    assert rc == 0 and out.splitlines()[0].split("\t")[0] == "id" and "late" in out

    rc, _, err = await _cli("complaints", "answer", "999", "--answer", "x", "--by", "s")
    assert rc == 2 and "no complaint with id 999" in err
