"""HA in one process, without a database: the settings refuse a lease shorter than two
heartbeats; a standby says so on /health and is never ready."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from test_http_api_fakes import FakeDaemon, bearer, make_settings

from siaga112.api import Api
from siaga112.settings import HaSettings


def test_lease_must_cover_two_heartbeats() -> None:
    with pytest.raises(ValidationError, match="at least twice"):
        HaSettings(enabled=True, heartbeat_interval=2.0, lease=3.0)
    assert HaSettings(enabled=True, heartbeat_interval=1.0, lease=3.0).lease == 3.0


class UpDatabase:
    async def ping(self, timeout: float) -> bool:  # noqa: ASYNC109 (the interface's)
        return True


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none",
                              connect_args={"timeout": 1})
    yield eng
    await eng.dispose()


@pytest.mark.parametrize("role, ready", [("active", True), ("standby", False)])
async def test_a_standby_says_so_and_is_never_ready(engine: AsyncEngine, role: str,
                                                    ready: bool) -> None:
    daemon = FakeDaemon(settings=make_settings(), engine=engine, repository=UpDatabase(),
                        policy=None, role=role)
    daemon.events.connected.set()  # ARI, the database, MQTT: everything up
    async with TestClient(TestServer(Api(daemon).app)) as c:
        health = await (await c.get("/health")).json()
        resp = await c.get("/ready", headers=bearer("supervisor"))
        answer = await resp.json()
    assert health == {"status": "ok", "role": role}
    assert (resp.status == 200, answer["role"], answer["ready"]) == (ready, role, ready)
