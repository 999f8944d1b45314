"""NetworkLocator: what Asterisk's GEOLOC_PROFILE() says becomes one location event, off the
call path; a location by reference is fetched with a bounded time and size, and whatever goes
wrong is an event with an error, never an exception."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from tests.conftest import serving
from tests.unit.test_location_parsers import CIRCLE, pidf

from siaga112.ari.client import NotFound
from siaga112.location.network import NetworkLocator
from siaga112.model import CallEvent, CallEventType


class Vars:
    """GEOLOC_PROFILE(field) values of one channel; a missing channel is a 404."""

    def __init__(self, values: dict[str, str], gone: bool = False) -> None:
        self.values = values
        self.gone = gone
        self.asked: list[str] = []

    async def get_var(self, channel_id: str, name: str) -> str:
        self.asked.append(name)
        if self.gone:
            raise NotFound("GET", f"/channels/{channel_id}/variable", 404, "Channel not found")
        return self.values.get(name.removeprefix("GEOLOC_PROFILE(").rstrip(")"), "")


def arrived(**data: str) -> CallEvent:
    return CallEvent(call_id="c1", seq=1, type=CallEventType.ARRIVED,
                     data={"caller": "+6281234567890", "channel_id": "c1", **data})


async def locate(vars_: Vars, fetch_within: float = 3.0) -> list[CallEvent]:
    out: list[CallEvent] = []
    locator = NetworkLocator(vars_, out.append, fetch_timeout=fetch_within)
    # The dialplan's SIAGA112_GEO (the profile's format) comes with the ARRIVED event.
    fmt = vars_.values.get("format", "")
    locator.call_event(arrived(geo_format=fmt) if fmt else arrived())
    await asyncio.sleep(0)
    await asyncio.wait_for(locator.stop_when_idle(), 5)
    await locator.stop()
    return out


async def test_by_value_from_asterisks_parse() -> None:
    got = await locate(Vars({"format": "GML", "method": "A-GPS", "location_info":
                             'shape="Circle", crs="2d", pos="-6.12 106.15", radius="20"'}))
    [ev] = got
    assert ev.type is CallEventType.LOCATION and ev.call_id == "c1" and ev.seq == 0
    assert ev.data["source"] == "network"
    assert (ev.data["lat"], ev.data["lon"], ev.data["radius_m"]) == (-6.12, 106.15, 20.0)
    assert ev.data["method"] == "A-GPS"


async def test_no_location_costs_no_read_and_gives_no_event() -> None:
    vars_ = Vars({})
    assert await locate(vars_) == []
    assert vars_.asked == []  # the dialplan said: no location (no SIAGA112_GEO)


async def test_a_caller_gone_before_the_read_gives_no_event() -> None:
    assert await locate(Vars({"format": "GML"}, gone=True)) == []


async def test_outbound_calls_and_other_events_are_not_located() -> None:
    vars_ = Vars({"format": "GML"})
    locator = NetworkLocator(vars_, lambda ev: None)
    locator.call_event(arrived(direction="outbound", geo_format="GML"))
    locator.call_event(CallEvent(call_id="c1", seq=2, type=CallEventType.QUEUED))
    await asyncio.sleep(0.01)
    assert vars_.asked == []


async def test_an_unparsable_gml_is_an_event_with_an_error() -> None:
    [ev] = await locate(Vars({"format": "GML", "location_info": 'shape="Polygon", pos="1 2"'}))
    assert ev.data["source"] == "network" and "Polygon" in ev.data["error"]


@pytest.fixture
async def lis() -> AsyncIterator[str]:
    """A location server: /good, /slow (answers after 1 s), /big, /dtd, /missing (404)."""
    async def good(request: web.Request) -> web.Response:
        return web.Response(body=pidf(CIRCLE), content_type="application/pidf+xml")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return await good(request)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"<presence>" + b" " * 70_000 + b"</presence>")

    async def dtd(request: web.Request) -> web.Response:
        return web.Response(body=b'<!DOCTYPE p [<!ENTITY e SYSTEM "file:///etc/passwd">]><p>&e;</p>')

    app = web.Application()
    for name, handler in (("good", good), ("slow", slow), ("big", big), ("dtd", dtd)):
        app.router.add_get(f"/{name}", handler)
    async with serving(app) as base:
        yield base


def by_reference(uri: str) -> Vars:
    return Vars({"format": "URI", "location_info": f"URI={uri}"})


async def test_by_reference_is_fetched_and_parsed(lis: str) -> None:
    [ev] = await locate(by_reference(f"{lis}/good"))
    assert ev.data["source"] == "network_ref" and ev.data["uri"] == f"{lis}/good"
    assert (ev.data["lat"], ev.data["radius_m"], ev.data["method"]) == (-6.1201, 35.0, "GPS")


@pytest.mark.parametrize("path, error", [
    ("/slow", "no answer within 0.3 s"),
    ("/big", "larger than"),
    ("/dtd", "DTD"),
    ("/missing", "answered 404"),
])
async def test_by_reference_failures_are_events_with_errors(lis: str, path: str,
                                                            error: str) -> None:
    [ev] = await locate(by_reference(f"{lis}{path}"), fetch_within=0.3)
    assert ev.data["source"] == "network_ref" and error in ev.data["error"]
    assert "lat" not in ev.data


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "ftp://lis.example/x", "https://"])
async def test_only_http_references_are_fetched(uri: str) -> None:
    [ev] = await locate(by_reference(uri))
    assert "not an http(s) URI" in ev.data["error"]
