"""No caller is ever cut off by the system (issue 10), tested from the caller's clock: prompts
play to their end, people wait in silence, hang up at the worst instant, press keys late, and
operators leave while the daemon is down. Real SIPp phones through the real test PBX; what the
phones, PostgreSQL, MQTT and the API saw is what is checked, never the daemon's insides.

The rule under test: the system never ends a citizen's call on its own, except a blocked number
after the whole announcement and the whole wait to press 5, and a line that is dead.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112 import legs, procs
from siaga112.ari.client import AriClient
from siaga112.records.policy import BlockPolicy
from siaga112.records.repository import Repository
from siaga112.records.schemas import CallDetail
from siaga112.settings import AriSettings, PolicySettings, Settings
from siaga112_testkit.devstack.pbx import Pbx
from siaga112_testkit.loadtest.daemon import DaemonApi
from siaga112_testkit.loadtest.phones import CallerGroup, DeskPlan, national_number
from siaga112_testkit.loadtest.report import render
from siaga112_testkit.loadtest.runner import CallPath, LoadPlan, RunContext, run_load
from siaga112_testkit.sipp import SippResult, SippRun
from siaga112_testkit.topology import MOBILE_TRUNK
from tests import conftest
from tests.conftest import REPO, STATE, Stack, daemon_settings, reset_pbx, wait_for
from tests.integration import test_events_api
from tests.integration.pbx_view import holding_channels
from tests.integration.phones import (
    LANDLINE,
    MOBILE,
    e164,
    invites,
    logged,
    mobile_number,
    stamp,
)
from tests.integration.test_events_api import Tap

pytestmark = pytest.mark.integration
tap = test_events_api.tap  # the fixture: a plain MQTT subscriber, closed at the end

API = "http://127.0.0.1:8112"
# Long enough for a daemon that refuses short tokens (issue 11).
SUPERVISOR = "caller-clock-supervisor-token-0000"
OPERATOR = "caller-clock-operator-token-00000"
ADMIN = "caller-clock-admin-token-000000000"
TOKENS = {"tokens": [
    {"token": SUPERVISOR, "role": "supervisor", "name": "caller clock supervisor"},
    {"token": OPERATOR, "role": "operator", "name": "caller clock operator"},
    {"token": ADMIN, "role": "admin", "name": "caller clock admin"},
]}
# Timers short enough for a test, escalation out of the way unless a test is about it.
# The phone's clock against the PBX's: 20 ms media frames, SIPp's clock tick, loopback latency.
CLOCK_SLACK = 0.1
QUICK = {"ring_timeout": 4, "wrapup": 0, "announce_interval": 5,
         "no_operator_timeout": 120, "max_wait": 600}


# -- what a caller hears ----------------------------------------------------------------------


def prompt_seconds(name: str) -> float:
    """The length of a prompt as the PBX plays it (sound:siaga112/NAME), from the file itself."""
    played = Pbx(repo=REPO, state_dir=STATE).root / f"usr/share/asterisk/sounds/siaga112/{name}.wav"
    path = played if played.is_file() else REPO / f"build/sounds/{name}.wav"
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def heard(result: SippResult, start: str = "answered", end: str = "bye_received") -> float:
    """Seconds between two steps of a citizen_clock call, by the phone's own clock."""
    a, b = stamp(result.logs, start), stamp(result.logs, end)
    assert a is not None and b is not None, f"{start} or {end} missing: {result.explain()}"
    return (b - a) / 1000


def ok(result: SippResult) -> SippResult:
    assert result.ok, result.explain()
    return result


def talked_to(phones: list[SippRun], number: str) -> bool:
    """A desk phone answered this citizen's call and later hung up on it (its own BYE)."""
    for p in phones:
        logs = p.logs()
        calls = {e["call_id"] for e in logs if e.event == "invite"
                 and e.fields.get("caller") in (number, e164(number))}
        if any(e.event == "bye_sent" and e.fields.get("call_id") in calls for e in logs):
            return True
    return False


def served_by(phones: list[SippRun], number: str) -> bool:
    """Some desk phone or duty line got an INVITE from this citizen (national or E.164 form)."""
    return any(c in (number, e164(number)) for p in phones for c in invites(p))


# -- records, API, MQTT, PBX: what the world saw ---------------------------------------------


class Records:
    """The call records in PostgreSQL, read as the centre's staff would: by caller."""

    def __init__(self, db_url: str) -> None:
        self.engine = create_async_engine(db_url, pool_size=2, max_overflow=2)
        self.repo = Repository(self.engine)

    async def of(self, number: str) -> list[CallDetail]:
        rows = await self.repo.list_calls(caller=e164(number), limit=500)
        details = [await self.repo.get_call(r.call_id) for r in rows]
        return [d for d in details if d is not None]

    async def ended(self, number: str, count: int = 1, seconds: float = 20) -> list[CallDetail]:
        """The records of `count` calls from number once all have ended; exactly count."""

        async def get() -> list[CallDetail] | None:
            found = await self.of(number)
            done = len(found) >= count and all(d.call.ended_at is not None for d in found)
            return found if done else None

        try:
            found = await wait_for(get, seconds, f"{count} ended records from {number}")
        except AssertionError:
            raise AssertionError(f"records from {number}: {await self.of(number)}") from None
        assert len(found) == count, [d.call for d in found]
        return found

    async def handed_back(self, numbers: list[str]) -> int:
        q = text("SELECT count(*) FROM call_events e JOIN calls c USING (call_id) "
                 "WHERE c.caller = ANY(:callers) AND e.type = 'handed_back'")
        async with self.engine.connect() as conn:
            return int((await conn.execute(q, {"callers": numbers})).scalar_one())

    async def block(self, number: str) -> None:
        """Block a number as an admin would, before or while a daemon runs."""
        policy = BlockPolicy(self.engine, PolicySettings())
        await policy.block(e164(number), hours=1, reason="caller clock test", by="pytest")

    async def blocked(self, number: str) -> bool:
        return e164(number) in {b.number for b in await self.repo.active_blocks()}


@pytest.fixture
async def records(stack: Stack) -> AsyncIterator[Records]:
    r = Records(stack.db_url)
    yield r
    await r.engine.dispose()


def types_of(detail: CallDetail) -> list[str]:
    return [e.type for e in detail.events]


async def api_get(path: str, token: str = SUPERVISOR) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(
        API + path, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status, await r.json(content_type=None)


async def api_post(path: str, body: dict[str, Any], token: str = OPERATOR) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(
        API + path, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status, await r.json(content_type=None)


async def queue_entries() -> list[dict[str, Any]]:
    status, body = await api_get("/queue")
    assert status == 200, body
    return list(body["entries"])


def reports_overflow(body: Any) -> bool:
    """/ready says the centre is overflowing: a truthy `overflow` field (at any depth) or a
    value "overflow"."""
    if isinstance(body, dict):
        if body.get("overflow") not in (None, False, 0, "", [], {}, "none", "off"):
            return True
        return any(reports_overflow(v) for v in body.values())
    if isinstance(body, list):
        return any(reports_overflow(v) for v in body)
    return body == "overflow"


def mqtt_json(subscriber: Tap) -> list[Any]:
    out = []
    for m in subscriber.received:
        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
        try:
            out.append(json.loads(payload))
        except ValueError:
            pass  # status "online"/"offline"
    return out


def flagged(obj: Any, call_id: str, flag: str) -> bool:
    """Somewhere in a JSON document (a queue snapshot, a call event) this call carries flag."""
    if isinstance(obj, dict):
        if obj.get("call_id") == call_id:
            flags = obj.get("flags") or (obj.get("data") or {}).get("flags") or []
            if flag in flags:
                return True
        return any(flagged(v, call_id, flag) for v in obj.values())
    if isinstance(obj, list):
        return any(flagged(v, call_id, flag) for v in obj)
    return False


def ari() -> AriClient:
    """A client of the test PBX's ARI, with the conftest's credentials where it has them (the
    stack may generate the ARI password)."""
    settings = getattr(conftest, "ari_settings", AriSettings)()
    return AriClient(settings)


async def holding() -> set[str]:
    """The channels in the holding bridges, where callers wait for an operator."""
    async with ari() as ari_:
        return await holding_channels(ari_)


async def citizen_channel(number: str) -> str | None:
    """The citizen's channel in the PBX for this caller (as the trunk sent the number)."""
    async with ari() as ari_:
        for ch in await ari_.channels():
            if ch.caller.number in (number, e164(number)) and \
                    legs.parse(ch.id).kind is legs.LegKind.CITIZEN:
                return ch.id
    return None


# -- the daemon as its own process ------------------------------------------------------------


def _plain(value: Any) -> Any:
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _toml(data: dict[str, Any], prefix: str = "") -> list[str]:
    """A small TOML writer for settings: scalars, lists of scalars, tables, arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables:
        lines += ["", f"[{prefix}{key}]", *_toml(table, f"{prefix}{key}.")]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{prefix}{key}]]", *_toml(item, f"{prefix}{key}.")]
    return lines


def settings_toml(settings: Settings) -> str:
    return "\n".join(_toml(_plain(settings.model_dump(exclude_defaults=True)))) + "\n"


class DaemonProcess:
    """`siaga112 run` as its own process, as in production: SIGKILLed, SIGTERMed and restarted
    by its pid; its JSON log captured in a file."""

    def __init__(self, settings: Settings, home: Path) -> None:
        self.settings = settings
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "siaga112.toml"
        self.config.write_text(settings_toml(settings))
        self.config.chmod(0o600)
        self.pidfile = home / "daemon.pid"
        self.log = home / "daemon.log"

    @property
    def pid(self) -> int | None:
        return procs.read_pid(self.pidfile)

    async def start(self, seconds: float = 30) -> None:
        """Start it and wait for its resync with the PBX (its `resynced` log line)."""
        before = len(self.lines("resynced"))
        env = dict(os.environ, SIAGA112_CONFIG=str(self.config))
        procs.spawn([sys.executable, "-m", "siaga112.cli", "run"], self.pidfile, self.log,
                    env=env)

        def up() -> bool:
            if self.pid is None:
                raise AssertionError(f"the daemon exited at start: {self.tail()}")
            return len(self.lines("resynced")) > before

        await wait_for(up, seconds, f"the daemon up and resynced ({self.log})")

    def kill9(self) -> None:
        pid = self.pid
        assert pid is not None, "the daemon is not running"
        os.kill(pid, signal.SIGKILL)
        procs.stop_pid(self.pidfile, timeout=5)  # reaps it

    async def stop(self, seconds: float = 20) -> None:
        """SIGTERM, the graceful stop; SIGKILL only if it is still there after `seconds`."""
        await asyncio.to_thread(procs.stop_pid, self.pidfile, signal.SIGTERM, seconds)

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        try:
            raw = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        for line in raw:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line being written, or not ours
            if isinstance(entry, dict) and (event is None or entry.get("event") == event):
                out.append(entry)
        return out

    def tracebacks(self) -> list[str]:
        """Log lines that carry a traceback (structlog's `exception`, or raw Python output)."""
        found = [json.dumps(e)[:600] for e in self.lines() if "exception" in e]
        try:
            raw = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            raw = []
        found += [line[:300] for line in raw if line.startswith("Traceback")]
        return found

    def errors(self) -> list[str]:
        return [json.dumps(e)[:400] for e in self.lines()
                if e.get("level") in ("error", "critical")]

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


DaemonProcessFactory = Callable[..., Awaitable[DaemonProcess]]


@pytest.fixture
async def daemon_process(stack: Stack, tmp_path: Path) -> AsyncIterator[DaemonProcessFactory]:
    """make(logged_in=[...], **settings overrides) -> a started DaemonProcess; each one is
    stopped (SIGTERM) at the end and the PBX is reset."""
    made: list[DaemonProcess] = []

    async def make(logged_in: list[str], **overrides: Any) -> DaemonProcess:
        await reset_pbx(logged_in)
        overrides = {"api": TOKENS, **overrides}
        overrides["queue"] = {**QUICK, **overrides.get("queue", {})}
        settings = daemon_settings(stack, tmp_path, **overrides)
        d = DaemonProcess(settings, tmp_path / f"daemon{len(made) + 1}")
        made.append(d)
        await d.start()
        return d

    yield make
    for d in made:
        await d.stop(seconds=10)
    await reset_pbx(["op1"])


async def in_process(daemon_factory: Any, logged_in: list[str], **overrides: Any) -> Any:
    """A daemon in the test's own process (the conftest fixture), with this file's tokens."""
    overrides = {"api": TOKENS, **overrides}
    overrides["queue"] = {**QUICK, **overrides.get("queue", {})}
    return await daemon_factory(logged_in=logged_in, **overrides)


# -- 1. a blocked caller hears the whole announcement and has the whole wait -----------------


async def block(daemon: Any, number: str) -> None:
    """An admin blocks the number; the daemon's screening knows it at once."""
    await daemon.policy.block(e164(number), hours=1, reason="caller clock test", by="pytest")
    await daemon.screening.reload()


async def test_blocked_caller_presses_5_two_seconds_after_the_announcement(
    daemon_factory, phones, records
) -> None:
    """The announcement says "press 5" at its end; a caller who presses 5 two seconds after it
    has ended (well inside screening.bypass_wait) goes through to an operator, in the priority
    lane, flagged blocked_bypass."""
    daemon = await in_process(daemon_factory, ["op1"])
    number = mobile_number()
    await block(daemon, number)
    op1 = await phones.operator(1, ring=0.3, talk=1.0, calls=None)
    announcement = prompt_seconds("blocked")
    citizen = await phones.citizen_clock(number, hold=None, dtmf=phones.pcaps.dtmf("5"),
                                         dtmf_at=announcement + 2.0)
    result = ok(await citizen.wait(announcement + 30))

    pressed = stamp(result.logs, "dtmf_sent")
    assert pressed is not None, (
        f"the system hung up {heard(result):.1f} s after the answer, before the caller pressed 5 "
        f"{announcement + 2.0:.1f} s after it (the announcement lasts {announcement:.2f} s)")
    assert heard(result, "dtmf_sent", "bye_received") > 0, "hung up by the operator, after 5"
    assert invites(op1) == [e164(number)], "the operator is rung for the blocked caller"
    [detail] = await records.ended(number)
    types = types_of(detail)
    assert "blocked_announced" in types and "bypass" in types, types
    assert detail.call.operator == "op1"
    assert detail.call.disposition == "genuine"
    assert detail.call.priority is True
    assert "blocked_bypass" in detail.call.flags


async def test_blocked_caller_who_presses_nothing_hears_it_all_and_the_whole_wait(
    daemon_factory, phones, records
) -> None:
    """A blocked caller who presses nothing is hung up by the system, but only after the whole
    announcement and then the whole screening.bypass_wait: measured on the phone, from its
    answer to the PBX's BYE."""
    wait = 3.0
    daemon = await in_process(daemon_factory, ["op1"], screening={"bypass_wait": wait})
    number = mobile_number()
    await block(daemon, number)
    op1 = await phones.operator(1, ring=0.3, talk=1.0, calls=None)
    announcement = prompt_seconds("blocked")
    citizen = await phones.citizen_clock(number, hold=None, audio=phones.pcaps.silence(30))
    result = ok(await citizen.wait(announcement + wait + 30))

    assert result.events("bye_received"), "the system hangs up a blocked caller in the end"
    assert heard(result) >= announcement + wait - CLOCK_SLACK, (
        f"hung up {heard(result):.2f} s after the answer: before the whole announcement "
        f"({announcement:.2f} s) and the whole wait to press 5 ({wait} s) had passed")
    assert invites(op1) == [], "a blocked caller who does not press 5 rings nobody"
    [detail] = await records.ended(number)
    assert detail.call.disposition == "blocked"
    assert "queued" not in types_of(detail), types_of(detail)


# -- 2. a silent caller waits, and is never hung up for it ------------------------------------


@pytest.mark.timeout(180)
async def test_silent_caller_waits_a_minute_and_reaches_the_operator_who_logs_in(
    daemon_factory, phones, records, tap
) -> None:
    """No operator is logged in. A silent caller W waits a whole minute: after the press-55
    prompt has played they stay queued, flagged `silent` on the API, in the record and on
    MQTT. Meanwhile ten more silent callers from W's number hear the prompt, wait and give up
    (never marked ghost by the system, and the number is not blocked: a twelfth call is queued,
    not announced blocked), and a caller P presses 5 5 late, long after the prompt, and moves
    ahead of W. An operator logs in from the desk phone (*11): P, then W, reach them."""
    silent_after = 2.0
    daemon = await in_process(daemon_factory, [], silence={"enabled": True,
                                                           "silent_after": silent_after})
    t = await tap(f"{daemon.settings.mqtt.topic_prefix}/#")
    prompt = prompt_seconds("silent-check")
    op1 = await phones.operator(1, ring=0.3, talk=1.0, calls=None)
    number, presser = mobile_number(), mobile_number()
    w = await phones.citizen_clock(number, hold=None, audio=phones.pcaps.silence(120))
    w_answered = await logged(w, "answered", 10)
    short_hold = silent_after + prompt + 4.0
    ten = await phones.citizen_clock(number, hold=short_hold, audio=phones.pcaps.silence(30),
                                     calls=10, rate=20, call_limit=10)
    late = silent_after + prompt + 8.0
    p = await phones.citizen_clock(presser, LANDLINE, hold=None, audio=phones.pcaps.silence(120),
                                   dtmf=phones.pcaps.dtmf("55"), dtmf_at=late)

    # The ten give up by themselves, after the prompt: not ghosts, and not counted.
    result = ok(await ten.wait(short_hold + 30))
    assert not result.events("bye_received"), "the system hung up a silent caller"
    gave_up = await ended_of(records, number, 10)
    for d in gave_up:
        assert d.call.disposition == "abandoned", (d.call.disposition, types_of(d))
        assert "silent" in d.call.flags, (d.call.flags, types_of(d))
    assert not await records.blocked(number), "silent callers got their number blocked"
    twelfth = await phones.citizen_clock(number, hold=3.0)
    assert not ok(await twelfth.wait(20)).events("bye_received")
    every = await ended_of(records, number, 11)
    screened = [e.data.get("blocked") for d in every for e in d.events if e.type == "screened"]
    assert screened == [False] * 11, "a call from the number was screened as blocked"
    assert all("queued" in types_of(d) for d in every)

    # A whole minute of waiting in silence, from W's clock.
    await asyncio.sleep(max(0.0, w_answered + 60.0 - asyncio.get_running_loop().time()))
    assert w.running and not [e for e in w.logs() if e.event == "bye_received"], \
        "the silent caller was hung up while waiting"
    entries = [e for e in await queue_entries() if e["caller"] in (e164(presser), e164(number))]
    assert [e["caller"] for e in entries] == [e164(presser), e164(number)], entries
    assert entries[0]["priority"] and "silent_emergency" in entries[0]["flags"], entries[0]
    assert "silent" in entries[1]["flags"], entries[1]
    w_id = entries[1]["call_id"]
    [live] = [d for d in await records.of(number) if d.call.call_id == w_id]
    assert live.call.ended_at is None
    assert "silent" in live.call.flags or any(
        "silent" in (e.data.get("flags") or []) for e in live.events), types_of(live)
    assert any(flagged(doc, w_id, "silent") for doc in mqtt_json(t)), \
        "MQTT never said the waiting caller is silent"

    # The operator logs in from the desk phone and takes them in order.
    ok(await phones.code(1, "*11"))
    ok(await p.wait(30))
    ok(await w.wait(30))
    assert invites(op1) == [e164(presser), e164(number)]
    [pd] = await records.ended(presser)
    assert pd.call.priority and "silent_emergency" in pd.call.flags, pd.call
    assert pd.call.operator == "op1" and pd.call.disposition == "genuine"
    # W's record ends when the writer next stores (every database.store_interval).
    [wd] = [d for d in await ended_of(records, number, 12) if d.call.call_id == w_id]
    assert wd.call.operator == "op1" and wd.call.disposition == "genuine", wd.call
    assert "silent" in wd.call.flags, wd.call.flags
    ghosts = [d.call.call_id for d in await records.of(number) if d.call.disposition == "ghost"]
    assert ghosts == [], "only an operator marks a ghost call"


# -- 3. kill -9 as the operator hangs up -------------------------------------------------------


@pytest.mark.timeout(150)
async def test_kill_9_as_the_operator_hangs_up_requeues_the_citizen_at_the_front(
    daemon_process, phones, records
) -> None:
    """A talks to op1, B to op3, C waits. op1 logs out (*12) during the call, to leave after it;
    the daemon is killed (SIGKILL) an instant before op1 hangs up. After the restart A is back
    in the queue at the front (in the holding bridge, hearing the waiting announcement),
    reaches op2 when op2 logs in, before C; op3, busy with B all along, is never offered a
    call. (A desk code dialled while no daemon is up is refused with "unknown code": the
    operators' states live in PostgreSQL, kept by the daemon.)"""
    talk = 12.0
    daemon = await daemon_process(["op1"])
    op1 = await phones.operator(1, ring=0.2, talk=talk, calls=None)
    op2 = await phones.operator(2, ring=0.2, talk=1.0, calls=None)
    op3 = await phones.operator(3, ring=0.2, talk=None, calls=None)
    a, b, c = mobile_number(), mobile_number(), mobile_number()
    ca = await phones.citizen_clock(a, hold=None)
    op1_answered = await logged(op1, "answered", 10)
    ok(await phones.code(3, "*11"))
    await asyncio.sleep(0.5)
    cb = await phones.citizen_clock(b, LANDLINE, hold=25.0)
    await logged(op3, "answered", 10)
    cc = await phones.citizen_clock(c, hold=None)
    await wait_for(lambda: _in_holding(c), 10, "C waiting in the holding bridge")
    ok(await phones.code(1, "*12"))  # op1 will leave after this call

    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, op1_answered + talk - 0.3 - loop.time()))
    assert not [e for e in op1.logs() if e.event == "bye_sent"], "set-up took too long"
    daemon.kill9()
    await logged(op1, "bye_sent", 5)  # the operator hangs up: the daemon is not there
    await asyncio.sleep(0.5)
    assert ca.running, "A was hung up with the daemon down"
    await daemon.start()

    await wait_for(lambda: _in_holding(a), 15,
                   "A re-queued into the holding bridge after the restart")
    ok(await phones.code(2, "*11"))
    ok(await ca.wait(30))
    ok(await cc.wait(30))
    ok(await cb.wait(30))
    assert invites(op2) == [e164(a), e164(c)], "A first (re-queued at the front), then C"
    assert invites(op3) == [e164(b)], "op3 was offered a call while busy with B"
    assert invites(op1) == [e164(a)]

    [ad] = await records.ended(a)
    # By time: a restarted daemon numbers a taken-back call's events from 1 again.
    connected = [e.data.get("operator") for e in sorted(ad.events, key=lambda e: e.at)
                 if e.type == "connected"]
    assert connected == ["op1", "op2"], types_of(ad)
    assert any(e.type == "requeued" and e.data.get("reason") == "operator_gone"
               for e in ad.events), types_of(ad)
    assert ad.call.disposition == "genuine"
    for number, operator in ((b, "op3"), (c, "op2")):
        [d] = await records.ended(number)
        assert (d.call.operator, d.call.disposition) == (operator, "genuine"), d.call
    assert daemon.tracebacks() == []


async def ended_of(records: Records, number: str, n: int) -> list[CallDetail]:
    """The records of the calls from number that have ended, once there are n of them."""

    async def get() -> list[CallDetail] | None:
        done = [d for d in await records.of(number) if d.call.ended_at is not None]
        return done if len(done) >= n else None

    found = await wait_for(get, 30, f"{n} ended calls from {number}")
    assert len(found) == n, [d.call for d in found]
    return found


async def _in_holding(number: str) -> bool:
    channel = await citizen_channel(number)
    return channel is not None and channel in await holding()


# -- 4. the hang-up race is normal life ------------------------------------------------------


@pytest.mark.timeout(180)
async def test_400_callers_who_hang_up_as_the_operator_answers(
    daemon_process, records, tmp_path: Path
) -> None:
    """400 calls that hang up just as their operator answers: the 8 desk phones answer 0.3 s
    after they ring, and eight groups of 50 callers (20 calls/s in all) hang up 0.20, 0.24, ...
    0.48 s after their answer, so the hang-ups straddle the operators' answers (the offer
    follows the answer by a few ms): some leave while the desk phone rings, some as it
    answers, some just after. No traceback in the daemon's log, no hand-back, every record
    abandoned or genuine, every operator free at the end."""
    ops = [f"op{n}" for n in range(1, 9)]
    daemon = await daemon_process(ops, log_level="info", queue={"ring_timeout": 4})
    holds = [0.20 + 0.04 * i for i in range(8)]
    groups = [CallerGroup(f"hold{round(h * 1000)}ms", MOBILE_TRUNK, national_number("0813", 8),
                          rate=2.5, calls=50, hold=h, audio=False, port=5200 + i,
                          media_port=6200 + 10 * i)
              for i, h in enumerate(holds)]
    plan = LoadPlan("race", CallPath.DAEMON, groups, DeskPlan(operators=8, ring=0.3, talk=1.0),
                    max_seconds=50)
    lines: list[str] = []
    async with aiohttp.ClientSession() as session:
        api = DaemonApi(API, ADMIN, session)
        ctx = RunContext(daemon.settings, "127.0.0.1:5060", tmp_path / "load", lines.append,
                         api=api, drain_seconds=20)
        report = await run_load(plan, ctx)
    explain = render(report)
    callers = [e164(g.caller) for g in groups]

    assert report.offered == 400, explain
    assert daemon.tracebacks() == [], daemon.tracebacks()[:5]
    assert await records.handed_back(callers) == 0, explain
    assert report.records == report.offered, explain
    assert set(report.dispositions) <= {"abandoned", "genuine"}, report.dispositions
    # The load did straddle the answers: callers who left first and callers who were heard.
    assert min(report.dispositions.get(d, 0) for d in ("abandoned", "genuine")) > 0, explain

    async def all_free() -> list[dict[str, Any]] | None:
        status, body = await api_get("/operators")
        busy = [o for o in body["operators"] if o["state"] != "available"]
        return None if busy else body["operators"]

    try:
        await wait_for(all_free, 10, "every operator free")
    except AssertionError:
        raise AssertionError(f"operators not free: {(await api_get('/operators'))[1]}") from None
    assert daemon.errors() == [], daemon.errors()[:5]


# -- 5. escalation: nobody can answer ----------------------------------------------------------


async def test_every_operator_logs_out_while_three_wait_they_ring_the_fallback_queue(
    daemon_factory, phones, records, tap
) -> None:
    """op1 and op2 are on calls; A, B and C wait. Both log out from their desk phones. Within
    queue.no_operator_timeout the three go to the fallback queue, where the other desk phones
    (op3, op4, op5) ring and answer; each call has its `overflow` event on MQTT and /ready says the
    centre overflows."""
    timeout = 3.0
    daemon = await in_process(daemon_factory, ["op1", "op2"],
                              queue={"no_operator_timeout": timeout, "max_wait": 300,
                                     "overflow": "fallback"})
    t = await tap(f"{daemon.settings.mqtt.topic_prefix}/#")
    busy = [await phones.operator(n, ring=0.2, talk=None, calls=None) for n in (1, 2)]
    spare = [await phones.operator(n, ring=0.3, talk=1.0, calls=None) for n in (3, 4, 5)]
    for _ in busy:
        await phones.citizen(mobile_number(), MOBILE, hold=40.0)
    await wait_for(lambda: all(len(invites(p)) == 1 for p in busy), 10, "op1, op2 on calls")
    numbers = [mobile_number() for _ in range(3)]
    waiting = [await phones.citizen(n, LANDLINE, hold=None) for n in numbers]
    await wait_for(lambda: _queued(numbers), 10, "the three callers waiting")
    ids = [e["call_id"] for e in await queue_entries() if e["caller"] in map(e164, numbers)]

    for n in (1, 2):
        ok(await phones.code(n, "*12"))
    ready_said: list[Any] = []

    async def all_in_fallback() -> bool:
        ready_said.append((await api_get("/ready"))[1])
        return all(served_by(spare, n) for n in numbers)

    # The fallback queue rings every free desk phone at once and tries again after its own
    # ring timeout (queues.conf: 15 s): a caller can wait one such round for a free phone.
    await wait_for(all_in_fallback, timeout + 30, "all three ringing the fallback queue")
    for citizen in waiting:
        result = ok(await citizen.wait(30))
        assert result.events("bye_received")
    docs = mqtt_json(t)
    for call_id in ids:
        assert any(isinstance(d, dict) and d.get("call_id") == call_id
                   and d.get("type") == "overflow" for d in docs), f"no overflow for {call_id}"
    ready_said.append((await api_get("/ready"))[1])
    assert any(reports_overflow(body) for body in ready_said), ready_said[-1]
    for n in numbers:
        [d] = await records.ended(n, seconds=30)
        assert "overflow" in types_of(d), types_of(d)


async def _queued(numbers: list[str]) -> bool:
    waiting = {e["caller"] for e in await queue_entries()}
    return all(e164(n) in waiting for n in numbers)


# -- 6. a graceful stop leaves nobody behind --------------------------------------------------


@pytest.mark.timeout(150)
async def test_graceful_stop_hands_every_caller_to_the_fallback_queue(
    daemon_process, phones, records
) -> None:
    """On SIGTERM: R's operator phone is ringing (op1 does not answer), Q waits in the queue, X
    (blocked) hears the announcement and A is arriving. Every one reaches the fallback queue,
    where op2 and op3 answer them: no citizen is hung up by the stop."""
    r, q, x, a = (mobile_number() for _ in range(4))
    await records.block(x)
    daemon = await daemon_process(["op1"], queue={"ring_timeout": 30})
    op1 = await phones.operator_noanswer(1, calls=None)
    desks = [await phones.operator(n, ring=0.3, talk=1.0, calls=None) for n in (2, 3)]
    cr = await phones.citizen_clock(r, hold=None)
    await logged(op1, "invite", 10)
    cq = await phones.citizen_clock(q, LANDLINE, hold=None)
    await wait_for(lambda: _in_holding(q), 10, "Q waiting")
    cx = await phones.citizen_clock(x, hold=None)
    await logged(cx, "answered", 10)
    await asyncio.sleep(1.0)  # X is in the announcement
    ca = await phones.citizen_clock(a, hold=None)
    await logged(ca, "invite_sent", 5)
    await daemon.stop()

    results = {n: await c.wait(40) for n, c in ((r, cr), (q, cq), (x, cx), (a, ca))}
    for n, result in results.items():
        assert served_by(desks, n), f"{n} never reached the fallback queue: {result.explain()}"
        assert ok(result).events("bye_received")
        assert talked_to(desks, n), f"{n} was not connected to a desk phone that hung up"


async def test_nobody_at_the_desk_sends_the_caller_to_the_backup_centre(
    daemon_factory, phones, records
) -> None:
    """queue.overflow as a dial string: with every operator logged out for
    queue.no_operator_timeout, the waiting caller goes through the dialplan's [overflow]
    context to the backup centre (agency 01's duty line plays it here) and talks there."""
    await in_process(daemon_factory, [], queue={"no_operator_timeout": 2, "max_wait": 300,
                                                 "overflow": "PJSIP/agency01"})
    backup = await phones.agency("01", ring=0.3, talk=2.0, calls=None)
    number = mobile_number()
    citizen = await phones.citizen(number, MOBILE, hold=None)
    await wait_for(lambda: served_by([backup], number), 20, "the backup centre rung")
    result = ok(await citizen.wait(30))
    assert result.events("bye_received"), result.explain()  # the backup centre hung up
    [d] = await records.ended(number, seconds=30)
    assert "overflow" in types_of(d), types_of(d)
    [overflow] = [e for e in d.events if e.type == "overflow"]
    assert overflow.data["target"] == "PJSIP/agency01"
