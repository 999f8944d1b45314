"""The journal on a full disk (a small tmpfs, mounted for the test), with PostgreSQL away and
back: every record the journal acknowledged reaches PostgreSQL exactly once, every other one is
counted as dropped, and the calls' path never sees an exception."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.model import CallEvent
from siaga112.records.policy import BlockPolicy
from siaga112.records.writer import JOURNAL_UNWRITABLE, RecordWriter
from siaga112.settings import DatabaseSettings
from siaga112_testkit.devstack.postgres import start_postgres, stop_postgres

from .conftest import PORT
from .diskfull import Tmpfs, fill
from .factory import call_events

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

SETTINGS = DatabaseSettings(flush_interval=0.02, retry_interval=0.1, batch_size=7,
                            journal_max_bytes=1 << 20)


class Feeder:
    """The call path: hands events to the writer and notes which the journal did not keep."""

    def __init__(self, writer: RecordWriter) -> None:
        self.writer = writer
        self.fed: list[CallEvent] = []
        self.dropped: set[uuid.UUID] = set()

    def calls(self, prefix: str, n: int) -> None:
        for i in range(n):
            for ev in call_events(f"{prefix}-{i}"):
                before = self.writer.dropped
                self.writer.call_event(ev)  # never raises
                self.fed.append(ev)
                if self.writer.dropped > before:
                    self.dropped.add(ev.event_id)

    @property
    def acknowledged(self) -> set[uuid.UUID]:
        return {ev.event_id for ev in self.fed} - self.dropped


async def _event_ids(engine: AsyncEngine) -> list[uuid.UUID]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT event_id FROM call_events"))).scalars())


async def test_full_disk_then_space_and_database_back_every_acknowledged_record_once(
    clean: AsyncEngine, policy: BlockPolicy, tmp_path: Path, pg_state_dir: Path
) -> None:
    with Tmpfs(tmp_path / "disk", "128k") as disk:
        journal = disk / "journal"
        writer = RecordWriter(clean, journal, SETTINGS, policy,
                              quarantine_dir=tmp_path / "quarantine", segment_bytes=32 << 10)
        feed = Feeder(writer)
        writer.start()
        try:
            feed.calls("up", 5)  # the database is there
            assert await writer.wait_idle(10)
            filler = fill(disk, leave=10 << 10)  # the disk fills in the middle of a segment

            # PostgreSQL goes away; calls go on and fill the journal's last pages.
            await asyncio.to_thread(stop_postgres, pg_state_dir)
            try:
                feed.calls("down", 40)
                assert feed.dropped, "the disk never filled"
                assert writer.problems == [JOURNAL_UNWRITABLE]
                assert writer.dropped == len(feed.dropped)
                while writer.failures == 0:  # noqa: ASYNC110 (until the writer meets the outage)
                    await asyncio.sleep(0.02)
            finally:
                await asyncio.to_thread(start_postgres, pg_state_dir, PORT)

            # PostgreSQL is back, the disk still full: stored segments are deleted, which
            # makes room, while calls keep appending between the writer's commits.
            for n in range(10):
                feed.calls(f"full-{n}", 2)
                await asyncio.sleep(0.05)
            assert await writer.wait_idle(30)

            # Space comes back.
            filler.unlink()
            feed.calls("free", 5)
            assert await writer.wait_idle(30)
            assert writer.problems == []
        finally:
            await writer.stop()

        stored = await _event_ids(clean)
        assert len(stored) == len(set(stored))
        assert set(stored) == feed.acknowledged
        assert len(feed.acknowledged) + writer.dropped == len(feed.fed)
        assert writer.quarantined == 0
        # A restart finds nothing left to replay.
        again = RecordWriter(clean, journal, SETTINGS, policy,
                             quarantine_dir=tmp_path / "quarantine")
        assert again.backlog == 0
        await again.stop()
