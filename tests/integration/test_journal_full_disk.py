"""Calls on a full disk (issue 11, item 7): the daemon's journal is a small tmpfs, filled. Real
phones call through the real PBX; every call is answered by the operator, the records the
journal could not keep are counted as dropped (in /metrics, and /ready says degraded), and
when space is back every record the journal kept is in PostgreSQL exactly once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from siaga112.model import CallEvent
from tests.conftest import wait_for
from tests.integration.phones import MOBILE, mobile_number
from tests.records.diskfull import Tmpfs, fill

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

API = "http://127.0.0.1:8112"
SUPERVISOR = {"Authorization": "Bearer supervisor-token"}


@pytest.fixture
def journal_disk(tmp_path: Path) -> Iterator[Path]:
    """The daemon's journal directory (state_dir/journal) on a 128 KiB tmpfs."""
    with Tmpfs(tmp_path / "state" / "journal", "128k") as disk:
        yield disk


class Spy:
    """Sees each call event the writer is handed, and whether the journal kept it."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.handed = writer.call_event
        self.kept: list[CallEvent] = []
        self.dropped: list[CallEvent] = []

    def __call__(self, event: CallEvent) -> None:
        before = self.writer.dropped
        self.handed(event)
        (self.dropped if self.writer.dropped > before else self.kept).append(event)


async def get(path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(API + path, headers=SUPERVISOR) as r:
        return r.status, (await r.json() if path == "/ready" else await r.text())


async def test_calls_are_answered_on_a_full_disk_and_kept_records_land_once(
    daemon_factory: Any, phones: Any, journal_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    spy = Spy(daemon.writer)
    monkeypatch.setattr(daemon.writer, "call_event", spy)
    assert await daemon.writer.wait_idle(10)
    filler = fill(journal_disk)  # not one page left; "filler" is no segment: ignored

    op1 = await phones.operator(1, ring=0.3, talk=1.0, calls=3)
    for _ in range(2):
        citizen = await phones.citizen(mobile_number(), MOBILE, hold=None)
        result = await citizen.wait(20)
        assert result.ok, result.explain()
    assert spy.dropped, "the full disk refused nothing"
    assert daemon.writer.problems == ["journal_unwritable"]
    status, ready = await get("/ready")
    assert (status, ready["journal"], ready["journal_problems"]) == (
        503, "degraded", ["journal_unwritable"])
    _, metrics = await get("/metrics")
    assert f"siaga112_records_dropped_total {float(daemon.writer.dropped)}" in metrics
    assert "siaga112_records_degraded 1.0" in metrics

    filler.unlink()  # space is back
    citizen = await phones.citizen(mobile_number(), MOBILE, hold=None)
    assert (await citizen.wait(20)).ok
    assert len((await op1.wait(10)).events("invite")) == 3  # every call reached the operator
    await wait_for(lambda: daemon.writer.wait_idle(1), 20, "the records written")
    assert daemon.writer.problems == []
    status, ready = await get("/ready")
    assert (status, ready["journal"]) == (200, "ok")

    async with daemon.engine.connect() as conn:
        ids = [uuid.UUID(str(r)) for r in (await conn.execute(
            text("SELECT event_id FROM call_events WHERE event_id = ANY(:ids)"),
            {"ids": [e.event_id for e in spy.kept + spy.dropped]})).scalars()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {e.event_id for e in spy.kept}  # every kept record once, no dropped one
    assert spy.kept and daemon.writer.quarantined == 0
