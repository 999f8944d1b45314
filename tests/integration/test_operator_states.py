"""Operators' chosen states live in PostgreSQL (operator_store.py): an operator who paused or
logged out at the desk phone is still paused or logged out after the PBX restarted and a new
daemon started (nothing of it was kept in the PBX or in the old daemon's memory)."""

from __future__ import annotations

import asyncio

import pytest

from siaga112.model import OperatorState
from siaga112_testkit.devstack.pbx import Pbx
from tests.conftest import REPO, STATE, stored_choice, wait_for

pytestmark = pytest.mark.integration


async def _is(value, wanted: str) -> bool:
    return (await value) == wanted


async def test_states_survive_a_pbx_restart(daemon_factory, phones) -> None:
    first = await daemon_factory(logged_in=["op1", "op2", "op3"])
    for n, code, state in [(1, "*13", "paused"), (2, "*12", "logged_out")]:
        result = await phones.code(n, code)
        assert result.ok, result.explain()
        await wait_for(lambda n=n, s=state: _is(stored_choice(f"op{n}"), s), 5, f"op{n} {state}")
    await first.shutdown(grace=2)
    pbx = Pbx(repo=REPO, state_dir=STATE)
    await asyncio.to_thread(pbx.down)
    await asyncio.to_thread(pbx.up)
    second = await daemon_factory(logged_in=None, reset=False)
    desk = second.desk
    assert desk.get("op1").state is OperatorState.PAUSED
    assert desk.get("op1").reason == "desk phone"
    assert desk.get("op2").state is OperatorState.LOGGED_OUT
    assert desk.get("op3").state is OperatorState.AVAILABLE
