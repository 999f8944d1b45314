"""Nobody is left alone in our application: a caller the daemon lost track of (here its
StasisStart never reached the call path: a lost event) is found by the sweep at its second
look and taken in as after a restart: screened, queued, answered by an operator."""

from __future__ import annotations

from typing import Any

import pytest

from siaga112.ari.models import AriEvent, StasisStart
from tests.conftest import wait_for
from tests.integration.phones import MOBILE, e164, mobile_number

pytestmark = pytest.mark.integration


async def test_a_caller_whose_arrival_was_lost_is_found_and_served(daemon_factory,
                                                                   phones) -> None:
    daemon = await daemon_factory(logged_in=["op1"], ari={"sweep_interval": 1.0})
    route = daemon.events._on_event
    lost: list[str] = []

    def lose_the_first_arrival(ev: AriEvent) -> None:
        if isinstance(ev, StasisStart) and not lost and (ev.args or ["citizen"])[0] == "citizen":
            lost.append(ev.channel.id)
            return
        route(ev)

    daemon.events._on_event = lose_the_first_arrival
    await phones.operator(1, ring=0.2, talk=1.0)
    number = mobile_number()
    call = await phones.citizen(number, MOBILE, hold=None)  # stays until someone hangs up
    result = await call.wait(30)
    assert result.ok and result.events("bye_received"), result.explain()
    assert lost, "the arrival was not lost: the test proves nothing"

    async def record() -> Any:
        await daemon.writer.wait_idle(5)
        found = await daemon.repository.list_calls(caller=e164(number))
        return found[0] if found and found[0].ended_at else None

    rec = await wait_for(record, 10, "the call's record, ended")
    assert rec.call_id == lost[0]
    assert (rec.operator, rec.disposition) == ("op1", "genuine"), rec
