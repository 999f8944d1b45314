"""Caller location through the real test PBX (issue 15, part 2): a SIPp citizen whose INVITE
carries a PIDF-LO body (RFC 6442 Geolocation header, by value) or a location by reference; an
AML message (ETSI TS 103 625) posted during the call; a malformed one. Each check reads what
the record, MQTT and GET /calls/{id} say."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from siaga112_testkit import sipp
from siaga112_testkit.sipp import SippRun
from tests.conftest import serving, wait_for
from tests.integration.phones import MOBILE, e164, mobile_number
from tests.integration.test_call_path import call_of
from tests.integration.test_events_api import (  # noqa: F401 - fixtures
    API,
    SUPERVISOR,
    bearer,
    http,
    mqtt_settled,
    tap,
)

pytestmark = pytest.mark.integration

AML_TOKEN = "aml-gateway-token-0123456789abcdef"
AML = bearer(AML_TOKEN)
TOKENS = [
    {"token": "admin-token", "role": "admin", "name": "test admin"},
    {"token": "operator-token", "role": "operator", "name": "test operator"},
    {"token": "supervisor-token", "role": "supervisor", "name": "test supervisor"},
    {"token": AML_TOKEN, "role": "aml", "name": "handset gateway"},
]
PIDF_KEYS = {"lat": "-6.1201", "lon": "106.1503", "radius": "35", "method": "GPS",
             "timestamp": "2026-11-30T07:00:00Z"}


def pidf_citizen(run_dir: Path, number: str, port: int, geolocation: str,
                 hold: float = 6.0) -> SippRun:
    base = sipp.citizen(MOBILE, number, hold=hold, local_port=port)
    config = replace(base, scenario=base.scenario.with_name("citizen_pidf.xml"),
                     keys={**base.keys, **PIDF_KEYS, "geolocation": geolocation})
    return SippRun(config, run_dir)


async def located(daemon, call_id: str, source: str) -> dict:
    async def get():
        await daemon.writer.wait_idle(2)
        detail = await daemon.repository.get_call(call_id)
        loc = detail.call.location if detail else None
        return loc if loc and loc.get("source") == source else None

    return await wait_for(get, 15, f"a {source} location on the record of {call_id}")


async def test_pidf_lo_by_value_then_aml_reach_record_mqtt_and_api(
        daemon_factory, tmp_path, tap, http) -> None:  # noqa: F811
    daemon = await daemon_factory(logged_in=[], api={"tokens": TOKENS})
    p = daemon.settings.mqtt.topic_prefix
    await mqtt_settled(daemon)
    events = await tap(f"{p}/calls/+/events")
    number = mobile_number()
    citizen = pidf_citizen(tmp_path / "citizen", number, 5201, "<cid:loc-1@carrier.example>")
    await citizen.start()
    try:
        call_id = await call_of(daemon, e164(number))
        loc = await located(daemon, call_id, "network")
        assert (loc["lat"], loc["lon"], loc["radius_m"]) == (-6.1201, 106.1503, 35.0)
        assert loc["method"] == "GPS" and loc["shape"] == "Circle"

        # The handset's own location (AML) during the call: the latest location of the record.
        aml = urlencode({"v": "3", "device_number": e164(number), "emergency_number": "112",
                         "location_latitude": "-6.1205", "location_longitude": "106.1511",
                         "location_accuracy": "8", "location_confidence": "68",
                         "location_time": "1796022000000", "location_source": "GPS"})
        async with http.post("/aml", data=aml, headers=AML) as resp:
            assert resp.status == 202, await resp.text()
            assert await resp.json() == {"outcome": "matched", "call_id": call_id}
        loc = await located(daemon, call_id, "aml")
        assert (loc["lat"], loc["lon"], loc["radius_m"]) == (-6.1205, 106.1511, 8.0)

        # A malformed message: 422 naming the field; kept and counted, not on any call.
        bad = aml.replace("location_latitude=-6.1205", "location_latitude=north")
        async with http.post("/aml", data=bad, headers=AML) as resp:
            assert resp.status == 422
            answer = await resp.json()
        assert answer["error"] == "bad_aml"
        assert answer["detail"][0]["loc"] == ["body", "location_latitude"]
        assert daemon.aml.counts["invalid"] == 1
        kept = (daemon.settings.state_dir / "aml" / "kept.jsonl").read_text()
        assert "location_latitude" in kept
        # The aml token may do nothing else.
        async with http.get(f"/calls/{call_id}", headers=AML) as resp:
            assert resp.status == 403

        async with http.get(f"/calls/{call_id}", headers=SUPERVISOR) as resp:
            body = await resp.json()
        assert body["call"]["location"]["source"] == "aml"
        sources = [e["data"]["source"] for e in body["events"] if e["type"] == "location"]
        assert sorted(sources) == ["aml", "network"]

        await mqtt_settled(daemon)

        def both_located() -> list[Any] | None:
            # Published (nothing pending) is not yet received by our subscriber: a fresh
            # clone's make test once read it in between and found none.
            on = [e for e in events.call_events(f"{p}/calls/+/events", call_id)
                  if e.type.value == "location"]
            return on if sorted(e.data["source"] for e in on) == ["aml", "network"] else None

        on_mqtt = await wait_for(both_located, 5, "the network and aml locations on MQTT")
        network = next(e for e in on_mqtt if e.data["source"] == "network")
        assert (network.data["lat"], network.data["lon"]) == (-6.1201, 106.1503)
    finally:
        result = await citizen.wait(20)
    assert result.ok, result.explain()


@pytest.fixture
async def location_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A location server on loopback serving a PIDF-LO document by reference."""
    asked: list[str] = []
    document = (Path(__file__).parent / "pidf_circle.xml").read_bytes()

    async def serve(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(body=document, content_type="application/pidf+xml")

    app = web.Application()
    app.router.add_get("/loc/{id}", serve)
    async with serving(app) as base:
        yield base, asked


async def test_pidf_lo_by_reference_is_fetched(daemon_factory, tmp_path,
                                               location_server) -> None:
    base_url, asked = location_server
    daemon = await daemon_factory(logged_in=[])
    number = mobile_number()
    citizen = pidf_citizen(tmp_path / "citizen", number, 5202, f"<{base_url}/loc/{number}>",
                           hold=3.0)
    await citizen.start()
    try:
        call_id = await call_of(daemon, e164(number))
        loc = await located(daemon, call_id, "network_ref")
        assert asked == [f"/loc/{number}"]
        assert loc["uri"] == f"{base_url}/loc/{number}"
        assert (loc["lat"], loc["lon"], loc["radius_m"]) == (-6.4058, 106.0640, 50.0)
        assert loc["method"] == "Cell" and loc["time"] == "2026-11-30T06:59:30+00:00"
    finally:
        result = await citizen.wait(20)
    assert result.ok, result.explain()


async def test_a_call_without_location_has_none(daemon_factory, phones) -> None:
    daemon = await daemon_factory(logged_in=[])
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=1.0)
    call_id = await call_of(daemon, e164(number))
    assert (await citizen.wait(15)).ok
    await asyncio.sleep(0.5)
    await daemon.writer.wait_idle(5)
    detail = await daemon.repository.get_call(call_id)
    assert detail is not None and detail.call.location is None
    assert not [e for e in detail.events if e.type == "location"]


_ = (API, aiohttp)
