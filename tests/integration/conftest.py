"""Integration fixtures: SIPp phones (tests/integration/phones.py) and DTMF/audio pcaps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import release_phones
from tests.integration.phones import Pcaps, Phones


@pytest.fixture(scope="session")
def pcaps(tmp_path_factory: pytest.TempPathFactory) -> Pcaps:
    return Pcaps(tmp_path_factory.mktemp("pcaps"))


@pytest.fixture
async def phones(tmp_path: Path, pcaps: Pcaps) -> AsyncIterator[Phones]:
    p = Phones(tmp_path / "sipp", pcaps)
    yield p
    try:
        if p.started:
            await release_phones(p.pbx_urls)
    finally:
        await p.stop_all()
