"""The web console's own logic, without a browser: the call card built from events
(api/card.py), the live feed and its bounded streams (api/live.py), the desk binding of tokens
(settings), and the console's routes against a fake daemon (who the token is, the event
stream, the static files, the note's validation)."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import create_async_engine
from test_http_api_fakes import FakeDaemon, bearer, desk_of, make_settings

from siaga112.api import Api
from siaga112.api import live as live_mod
from siaga112.api.card import LineState, build_card, merge
from siaga112.api.console import STATIC
from siaga112.api.live import LiveFeed, TooManyStreams
from siaga112.model import (
    CallEvent,
    CallEventType,
    LineType,
    OperatorSnapshot,
    OperatorState,
    QueueEntry,
    QueueSnapshot,
)
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.settings import ApiToken, PolicySettings, Settings

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
CALL = "1700000000.42"
LINES = {"01": 2, "02": 2}


def ev(type_: CallEventType, seconds: float, seq: int = 1, call_id: str = CALL,
       **data: Any) -> CallEvent:
    return CallEvent(call_id=call_id, seq=seq, type=type_, at=T0 + timedelta(seconds=seconds),
                     data=data)


def card_of(events: list[CallEvent], now_s: float = 60.0, live: bool = True) -> Any:
    return build_card(CALL, events, live=live, now=T0 + timedelta(seconds=now_s), lines=LINES,
                      moving_minutes=15)


# -- the card ----------------------------------------------------------------------------------


def arrived() -> CallEvent:
    return ev(CallEventType.ARRIVED, 0, caller="+6281234567890", caller_raw="081234567890",
              line_type="mobile", trunk="trunk-mobile")


def test_a_ringing_card_has_caller_line_wait_so_far_and_flags() -> None:
    card = card_of([
        arrived(), ev(CallEventType.BYPASS, 5, 2),
        ev(CallEventType.QUEUED, 6, 3, position=1, priority=True, flags=["silent"]),
        ev(CallEventType.RINGING, 9, 4, operator="op1"),
    ], now_s=12)
    assert (card.caller, card.line_type, card.state, card.operator) == (
        "+6281234567890", "mobile", "ringing", "op1")
    assert card.priority and card.flags == ["blocked_bypass", "silent"]
    assert card.waited_seconds == 12.0  # still waiting: until now


def test_the_wait_stops_at_the_answer_and_marks_and_note_are_the_latest() -> None:
    card = card_of([
        arrived(), ev(CallEventType.CONNECTED, 7.5, 5, operator="op1"),
        ev(CallEventType.CATEGORY, 20, 6, category="05"),
        ev(CallEventType.CATEGORY, 21, 7, category="01"),
        ev(CallEventType.NOTE, 22, 0, text="first"), ev(CallEventType.NOTE, 23, 0, text="second"),
        ev(CallEventType.DISPOSITION, 24, 8, disposition="genuine"),
        ev(CallEventType.ENDED, 30, 9, disposition="abandoned"),
    ])
    assert (card.state, card.waited_seconds, card.category, card.note, card.disposition) == (
        "ended", 7.5, "01", "second", "genuine")


def test_an_unmarked_call_has_the_ending_disposition() -> None:
    card = card_of([arrived(), ev(CallEventType.ENDED, 3, 2, disposition="abandoned")])
    assert card.disposition == "abandoned" and card.waited_seconds == 3.0


def dispatch(type_: CallEventType, s: float, code: str = "01", **data: Any) -> CallEvent:
    return ev(type_, s, 10, agency=code, dispatch_id=f"{CALL}-{code}-x", **data)


def test_an_agency_line_rings_joins_accepts_and_its_team_moves() -> None:
    base = [arrived(), ev(CallEventType.CONNECTED, 5, 2, operator="op1"),
            dispatch(CallEventType.AGENCY_REQUESTED, 10)]
    assert card_of(base).agencies[0].state is LineState.RINGING
    joined = [*base, dispatch(CallEventType.AGENCY_JOINED, 14, line="PJSIP/agency01")]
    a = card_of(joined).agencies[0]
    assert (a.state, a.line, a.moving_due) == (LineState.ANSWERED, "PJSIP/agency01",
                                               T0 + timedelta(seconds=10, minutes=15))
    accepted = [*joined, dispatch(CallEventType.AGENCY_ACCEPTED, 20)]
    assert card_of(accepted).agencies[0].state is LineState.ACCEPTED
    moving = [*accepted, dispatch(CallEventType.TEAM_MOVING, 300)]
    a = card_of(moving, now_s=2000).agencies[0]
    assert a.state is LineState.MOVING and not a.overdue


def test_a_dispatch_without_a_team_moving_is_overdue_after_the_deadline() -> None:
    events = [arrived(), dispatch(CallEventType.AGENCY_REQUESTED, 10),
              dispatch(CallEventType.AGENCY_JOINED, 14, line="PJSIP/agency01")]
    assert not card_of(events, now_s=10 + 15 * 60 - 1).agencies[0].overdue
    assert card_of(events, now_s=10 + 15 * 60).agencies[0].overdue


def test_a_failed_duty_line_is_a_fallback_tried_and_all_lines_failed_is_failed() -> None:
    events = [arrived(), dispatch(CallEventType.AGENCY_REQUESTED, 10),
              dispatch(CallEventType.AGENCY_LINE_FAILED, 30, line="PJSIP/agency01")]
    a = card_of(events).agencies[0]
    assert (a.state, a.failed_lines) == (LineState.RINGING, ["PJSIP/agency01"])
    events.append(dispatch(CallEventType.AGENCY_LINE_FAILED, 50, line="PJSIP/agency01-fb"))
    a = card_of(events, now_s=5000).agencies[0]
    assert a.state is LineState.FAILED and not a.overdue


def test_the_latest_location_with_coordinates_is_shown() -> None:
    net: dict[str, Any] = {"source": "network", "lat": -6.12, "lon": 106.15, "radius_m": 30.0}
    aml: dict[str, Any] = {"source": "aml", "lat": -6.1201, "lon": 106.1502, "radius_m": 8.0}
    events = [arrived(), ev(CallEventType.LOCATION, 1, 0, **net),
              ev(CallEventType.LOCATION, 9, 0, **aml),
              ev(CallEventType.LOCATION, 12, 0, source="network", error="fetch timed out")]
    assert card_of(events).location == {**aml, "at": (T0 + timedelta(seconds=9)).isoformat()}
    assert card_of(events[:1]).location is None


def test_merge_keeps_each_event_once_in_order() -> None:
    a, b = arrived(), ev(CallEventType.QUEUED, 2, 2, priority=False, flags=[])
    assert merge([b, a], [a]) == [a, b]


# -- the live feed ---------------------------------------------------------------------------


def queue_of(n: int) -> QueueSnapshot:
    entries = [QueueEntry(call_id=f"c{i}", caller=None, line_type=LineType.MOBILE, since=T0,
                          priority=False) for i in range(n)]
    return QueueSnapshot(length=n, entries=entries)


async def test_a_stream_starts_with_the_snapshots_then_gets_every_change() -> None:
    feed = LiveFeed()
    feed.queue_changed(queue_of(1))
    feed.operators_changed([OperatorSnapshot(operator="op1", state=OperatorState.AVAILABLE,
                                             reachable=True)])
    stream = feed.open()
    feed.call_event(arrived())
    kinds = [stream.queue.get_nowait()[0] for _ in range(3)]  # type: ignore[index]
    assert kinds == ["queue", "operators", "call"]
    feed.close()
    assert stream.queue.get_nowait() is None and feed.streams == 0


async def test_a_stream_that_falls_behind_is_ended_not_waited_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_mod, "STREAM_BUFFER", 5)
    feed = LiveFeed()
    slow = feed.open()
    for i in range(10):
        feed.queue_changed(queue_of(i))  # never blocks, never raises
    assert slow.ended and feed.streams == 0 and feed.dropped_streams == 1
    items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert items[-1] is None


async def test_streams_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_mod, "MAX_STREAMS", 2)
    feed = LiveFeed()
    feed.open(), feed.open()
    with pytest.raises(TooManyStreams):
        feed.open()


def test_a_call_s_events_stay_for_the_wrap_up_and_are_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_mod, "KEEP_ENDED", 2)
    feed = LiveFeed()
    for n in range(3):
        cid = f"call-{n}"
        feed.call_event(ev(CallEventType.ARRIVED, 0, call_id=cid))
        feed.call_event(ev(CallEventType.ENDED, 5, 2, call_id=cid))
    feed.call_event(ev(CallEventType.NOTE, 9, 0, call_id="call-2", text="after"))
    assert feed.events_of("call-0") == []  # forgotten: the oldest ended call
    assert [e.type for e in feed.events_of("call-2")] == ["arrived", "ended", "note"]


# -- settings: a token's desk ----------------------------------------------------------------


def token(**kw: Any) -> dict[str, Any]:
    return {"token": SecretStr("x" * 30), "name": "t", **kw}


def test_an_operator_token_may_sit_at_a_known_desk() -> None:
    s = Settings(api={"tokens": [token(role="operator", desk="op3")]})  # type: ignore[arg-type]
    assert s.api.tokens[0].desk == "op3"


@pytest.mark.parametrize("kw, says", [
    ({"role": "supervisor", "desk": "op1"}, "only an operator or admin token sits at a desk"),
    ({"role": "agency", "agency": "01", "desk": "op1"}, "only an operator or admin"),
    ({"role": "operator", "desk": "op 1"}, "should match pattern"),
])
def test_a_desk_on_the_wrong_token_is_refused(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        ApiToken(**token(**kw))


def test_a_desk_that_is_no_operator_is_refused() -> None:
    with pytest.raises(ValidationError, match="desk op9 is not one of queue.operators"):
        Settings(api={"tokens": [token(role="operator", desk="op9")]})  # type: ignore[arg-type]


# -- the routes ------------------------------------------------------------------------------


@pytest.fixture
async def daemon() -> AsyncIterator[FakeDaemon]:
    """A fake daemon with a live call and op2's desk token; its database is a closed port."""
    settings = make_settings()
    settings.api.tokens.append(ApiToken(token=SecretStr("desk-token-eeeeeeeeeeeeeee"),
                                        role="operator", name="op2 desk", desk="op2"))
    nowhere = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none",
                                  connect_args={"timeout": 1})
    d = FakeDaemon(settings=settings, engine=nowhere, repository=Repository(nowhere),
                   policy=BlockPolicy(nowhere, PolicySettings()), desk=desk_of("op1", "op2"))
    d.stasis.sessions[CALL] = object()
    yield d
    await nowhere.dispose()


@pytest.fixture
async def client(daemon: FakeDaemon) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(Api(daemon).app)) as c:
        yield c


async def test_me_says_the_desk_and_the_directory(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/console/me",
                            headers={"Authorization": "Bearer desk-token-eeeeeeeeeeeeeee"})
    me = await resp.json()
    assert (me["name"], me["role"], me["desk"], me["may_act"], me["may_block"]) == (
        "op2 desk", "operator", "op2", True, False)
    assert len(me["agencies"]) == 14 and me["categories"]["01"] == "fire"
    sup = await (await client.get("/console/me", headers=bearer("supervisor"))).json()
    assert (sup["desk"], sup["may_act"]) == (None, False)


async def test_agency_tokens_and_no_token_cannot_open_the_console(
        client: TestClient[Any, Any]) -> None:
    for path in ("/console/me", "/console/events", f"/console/calls/{CALL}", "/console/alerts"):
        assert (await client.get(path, headers=bearer("agency"))).status == 403, path
        assert (await client.get(path)).status == 401, path


async def test_the_stream_sends_the_snapshots_and_the_calls_steps(
        client: TestClient[Any, Any], daemon: FakeDaemon) -> None:
    daemon.live.queue_changed(queue_of(2))
    resp = await client.get("/console/events", headers=bearer("supervisor"))
    assert resp.headers["Content-Type"] == "text/event-stream"
    daemon.live.call_event(arrived())
    text = ""
    while text.count("\n\n") < 4:
        text += (await asyncio.wait_for(resp.content.readany(), 5)).decode()
    blocks = [b for b in text.split("\n\n") if b.startswith("event:")]
    assert [b.splitlines()[0] for b in blocks] == ["event: queue", "event: operators",
                                                    "event: call"]
    assert '"length":2' in blocks[0] and '"type":"arrived"' in blocks[2]
    daemon.live.close()
    resp.close()


async def test_the_card_of_a_live_call_comes_without_the_records(
        client: TestClient[Any, Any], daemon: FakeDaemon) -> None:
    daemon.live.call_event(arrived())
    resp = await client.get(f"/console/calls/{CALL}", headers=bearer("supervisor"))
    card = await resp.json()
    assert resp.status == 200, card
    assert (card["caller"], card["live"], card["history"]) == ("+6281234567890", True, None)


async def test_a_note_is_an_event_of_the_call_by_its_token(
        client: TestClient[Any, Any], daemon: FakeDaemon) -> None:
    resp = await client.post(f"/calls/{CALL}/note", headers=bearer("operator"),
                             json={"text": "  two people\ntrapped  "})
    assert resp.status == 202, await resp.text()
    assert daemon.notes == [(CALL, "two people\ntrapped", "op1")]
    for bad in ({"text": ""}, {"text": "a\x00b"}, {"text": "x" * 2001}, {"note": "x"}):
        r = await client.post(f"/calls/{CALL}/note", headers=bearer("operator"), json=bad)
        assert (r.status, (await r.json())["error"]) == (422, "bad_body"), bad
    r = await client.post(f"/calls/{CALL}/note", headers=bearer("supervisor"), json={"text": "x"})
    assert r.status == 403
    assert len(daemon.notes) == 1


async def test_a_desk_token_sets_its_own_desk_s_state_only(
        client: TestClient[Any, Any], daemon: FakeDaemon) -> None:
    desk = {"Authorization": "Bearer desk-token-eeeeeeeeeeeeeee"}
    own = await client.post("/operators/op2/state", headers=desk, json={"state": "paused"})
    assert own.status == 200, await own.text()
    other = await client.post("/operators/op1/state", headers=desk, json={"state": "paused"})
    assert (other.status, (await other.json())["error"]) == (403, "forbidden")
    unbound = await client.post("/operators/op1/state", headers=bearer("operator"),
                                json={"state": "paused"})
    assert unbound.status == 200  # an operator token without a desk, as before


async def test_the_page_and_its_files_are_served_with_a_strict_policy(
        client: TestClient[Any, Any]) -> None:
    page = await client.get("/console/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "app.js" in await page.text()
    js = await client.get("/console/app.js")
    assert js.headers["Content-Type"].startswith("text/javascript")
    for missing in ("/console/nothing.js", "/console/..%2Fsettings.py", "/console/__init__.py"):
        assert (await client.get(missing)).status == 404, missing
    redirect = await client.get("/console", allow_redirects=False)
    assert (redirect.status, redirect.headers["Location"]) == (302, "/console/")


def test_every_console_file_ships_in_the_package() -> None:
    """pyproject's package data names each kind of file the console has (a wheel carries
    them: `pip install .` without the checkout serves the console)."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml")
                              .read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["siaga112"]
    files = sorted(p.name for p in STATIC.iterdir())
    assert files and all(any(Path("console", f).match(p) for p in patterns) for f in files)

