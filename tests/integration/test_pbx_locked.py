"""The PBX lets in only who it knows by address: an INVITE to 112 that names a trunk in its
From header (`From: <sip:trunk-mobile@...>`) but comes from an address that is not the trunk's
is refused by Asterisk and never reaches the daemon; the same INVITE from the trunk's address
is a citizen's call and reaches an operator. Real SIPp phones through the real test PBX."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from siaga112_testkit import sipp
from siaga112_testkit.sipp import SippRun
from tests.conftest import wait_for
from tests.integration.phones import MOBILE

pytestmark = pytest.mark.integration

SPOOFED_FROM = {"caller": "trunk-mobile", "from_host": MOBILE, "display": "trunk-mobile"}
# Not a trunk, not a desk phone, not a duty line: an address the topology does not know, and
# one inside the desk phones' range that no desk phone has.
STRANGERS = ("127.0.0.9", "127.0.1.50")
_STATUS = re.compile(r"SIP/2\.0 (\d{3})")


def spoofed_citizen(source: str, port: int, hold: float | None) -> sipp.SippConfig:
    """citizen.xml from `source`, its From user the mobile trunk's endpoint name."""
    config = sipp.citizen(source, "trunk-mobile", hold=hold, local_port=port)
    # A refused INVITE may get no answer at all: give up on it after a few seconds.
    return replace(config, keys=SPOOFED_FROM, recv_timeout_ms=8000)


async def test_a_trunk_name_in_from_does_not_make_a_stranger_the_trunk(
    daemon_factory, phones
) -> None:
    daemon = await daemon_factory(logged_in=["op1"])
    op1 = await phones.operator(1, ring=0.2, talk=1.0)
    since = datetime.now(UTC)
    seen: set[str] = set()

    async def watch_sessions() -> None:
        while True:
            seen.update(daemon.stasis.sessions)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_sessions())
    try:
        for n, source in enumerate(STRANGERS):
            run = SippRun(spoofed_citizen(source, 5300 + n, hold=1.0),
                          phones.root / f"stranger-{source}")
            await run.start()
            result = await run.wait(30)
            statuses = {int(s) for s in _STATUS.findall(result.errors)}
            assert not result.events("answered"), f"{source} was answered: {result.explain()}"
            assert not result.ok, result.explain()
            assert 200 not in statuses, result.explain()
            # Refused with a 4xx (Asterisk challenges an unknown source: 401), or not answered.
            assert not statuses or any(400 <= s < 500 for s in statuses), result.explain()
        await asyncio.sleep(1.0)  # a call that got in would be a session by now
    finally:
        watcher.cancel()
    assert seen == set(), "a stranger's INVITE reached the daemon (StasisStart)"
    assert op1.logs() == [], "a stranger's INVITE rang an operator"
    await daemon.writer.wait_idle(2)
    assert await daemon.repository.list_calls(since=since) == [], "a stranger's call has a record"

    # The same INVITE from the trunk's own address is a citizen's call.
    genuine = SippRun(spoofed_citizen(MOBILE, 5302, hold=None), phones.root / "trunk")
    await genuine.start()
    result = await genuine.wait(20)
    assert result.ok and result.events("answered"), result.explain()
    assert len((await op1.wait(10)).events("invite")) == 1, "the trunk's call reached no operator"

    async def answered_record() -> list:
        await daemon.writer.wait_idle(2)
        calls = await daemon.repository.list_calls(since=since)
        return calls if calls and all(c.operator for c in calls) else []

    calls = await wait_for(answered_record, 15, "the trunk's call's record")
    assert [(c.trunk, c.operator) for c in calls] == [("trunk-mobile", "op1")]
