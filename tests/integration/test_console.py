"""The web console in a real browser (Debian's chromium, driven by Playwright) against the whole
daemon on the local stack: SIPp citizens, desk phones and agency duty lines through the real
Asterisk, records in PostgreSQL. The operator's card, bringing in an agency by name, marks and
a note reaching the record; the supervisor's wall seeing the queue grow and shrink and a KPI
move; refusals shown to the user. Screenshots of both views go to var/screenshots/."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from siaga112.model import CallEvent, CallEventType, OperatorState
from siaga112.records.apply import store
from tests.conftest import STATE, wait_for
from tests.integration.phones import MOBILE, e164, logged, mobile_number
from tests.integration.test_call_path import call_of, record

pytestmark = pytest.mark.integration

API = "http://127.0.0.1:8112"
CONSOLE = f"{API}/console/"
CHROMIUM = "/usr/bin/chromium"
SHOTS = STATE / "screenshots"
OP1, SUPERVISOR, ADMIN, AGENCY = (f"{who}-console-token" for who in
                                  ("op1", "supervisor", "admin", "agency"))
TOKENS = [
    {"token": OP1, "role": "operator", "name": "op1 desk", "desk": "op1"},
    {"token": SUPERVISOR, "role": "supervisor", "name": "wall"},
    {"token": ADMIN, "role": "admin", "name": "test admin"},
    {"token": AGENCY, "role": "agency", "name": "damkar", "agency": "01"},
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        yield b
        await b.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000},
                                        timezone_id="Asia/Jakarta")
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    await context.close()
    assert errors == [], f"the console's scripts failed: {errors}"


async def sign_in(page: Page, token: str) -> None:
    await page.goto(CONSOLE)
    await page.fill("#token", token)
    await page.click("#sign-in-button")


async def seed_history(daemon: Any, number: str) -> None:
    """Two earlier calls from `number`: a genuine fire two days ago, and yesterday a prank that
    pressed 5 through a block."""
    events: list[CallEvent] = []
    now = datetime.now(UTC)
    for days, disposition, category in ((2, "genuine", "01"), (1, "prank", "12")):
        call_id = f"seed-{uuid.uuid4().hex[:12]}"
        at = now - timedelta(days=days)

        def ev(seq: int, type_: CallEventType, offset: float, **data: Any) -> CallEvent:
            return CallEvent(call_id=call_id, seq=seq, type=type_,  # noqa: B023
                             at=at + timedelta(seconds=offset), data=data)  # noqa: B023

        events += [
            ev(1, CallEventType.ARRIVED, 0, caller=e164(number), caller_raw=number,
               line_type="mobile", trunk="trunk-mobile"),
            ev(2, CallEventType.CONNECTED, 4, operator="op2"),
            ev(3, CallEventType.CATEGORY, 20, category=category),
            ev(4, CallEventType.DISPOSITION, 30, disposition=disposition, by="op2"),
            ev(5, CallEventType.ENDED, 40, disposition="genuine", cause="normal",
               hangup_by="caller"),
        ]
        if disposition == "prank":
            events.append(ev(6, CallEventType.BYPASS, 1))
    await store(daemon.engine, daemon.policy, events)


async def post(token: str, path: str, body: dict[str, Any]) -> int:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(API + path, json=body) as resp:
            return resp.status


async def test_operator_card_agency_marks_and_note(daemon_factory, phones, page) -> None:
    daemon = await daemon_factory(logged_in=["op1"], api={"tokens": TOKENS})
    number = mobile_number()
    await seed_history(daemon, number)
    await sign_in(page, OP1)
    await expect(page.locator("#desk-state-value")).to_have_text("Siap")

    agency = await phones.agency("01", ring=0.3)
    op1 = await phones.operator(1, ring=1.0, talk=None)
    citizen = await phones.citizen(number, MOBILE, hold=16.0, audio=phones.pcaps.speech(10))
    call_id = await call_of(daemon, e164(number))
    await logged(op1, "invite", 10)
    rung = time.time()
    await logged(op1, "answered", 10)
    answered = time.time()

    card = page.locator(f'#card[data-call-id="{call_id}"]')
    await expect(card.locator("#card-number")).to_have_text(e164(number))
    await expect(card.locator("#card-line-type")).to_have_text("Seluler")
    await expect(card.locator(".history-row")).to_have_count(2)
    await expect(card.locator("#card-history")).to_contain_text("Iseng")
    await expect(card.locator("#card-history")).to_contain_text("Kebakaran")
    await expect(card.locator("#card-marks")).to_contain_text(": 1")
    await expect(card.locator(".history-row").first).to_contain_text("tekan 5 melewati blokir")
    shown = await page.evaluate(f"window.__siaga112CardShown[{call_id!r}]") / 1000
    print(f"\ncall card on screen {1000 * (shown - answered):+.0f} ms after op1's phone "
          f"answered ({1000 * (shown - rung):+.0f} ms after it rang; negative: before)")

    await page.get_by_role("button", name="Pemadam Kebakaran").click()
    await logged(agency, "invite", 10)
    dispatch = card.locator('.dispatch[data-agency="01"]')
    await expect(dispatch).to_have_attribute("data-state", "answered", timeout=10_000)
    await expect(dispatch).to_contain_text("bergabung")
    await expect(page.locator('button.agency[data-agency="01"] .line-state')).to_have_text(
        "bergabung")

    await page.select_option("#category", "01")
    await page.fill("#note", "Api di dapur lantai dua, dua orang terjebak")
    await page.click("#save-note")
    await expect(card.locator("#card-note")).to_have_text(
        "Api di dapur lantai dua, dua orang terjebak")
    await page.get_by_role("button", name="Asli", exact=True).click()
    await expect(card.locator("#card-disposition")).to_have_text("Asli")
    await expect(card.locator("#card-category")).to_contain_text("Kebakaran")
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "console-operator.png"), full_page=True)

    assert (await citizen.wait(25)).ok
    detail = await record(daemon, call_id)
    assert detail.call.agencies == ["01"]
    assert detail.call.disposition == "genuine"
    assert detail.call.category == "01"
    assert detail.call.note == "Api di dapur lantai dua, dua orang terjebak"
    assert [e.data["by"] for e in detail.events if e.type == "note"] == ["op1 desk"]
    assert any(e.type == "agency_joined" and e.data["agency"] == "01" for e in detail.events)
    # Wrap-up: the card stays, the call ended, marks still go to the record.
    await expect(card).to_have_attribute("data-state", "ended", timeout=10_000)
    # A pause with its reason, as *13 does. Another desk changes while op1 types: the desk's
    # state is drawn again (every operators' event does that), and op1 types on, into the
    # same field, without clicking it again: what was typed stays, and so does the focus.
    await page.click("#pause-reason")
    await page.keyboard.type("istirahat")
    for state in (OperatorState.PAUSED, OperatorState.LOGGED_OUT):  # a change, whatever op2 was
        daemon.desk.choose("op2", state, "test", persist=False)
        await asyncio.sleep(0.3)  # the event's way: 50 ms coalescing, then server-sent events
    await page.keyboard.type(" siang")
    await expect(page.locator("#pause-reason")).to_have_value("istirahat siang")
    await page.get_by_role("button", name="Jeda", exact=True).click()
    await expect(page.locator("#desk-state")).to_contain_text("Jeda (istirahat siang)")
    op = next(o for o in daemon.desk.snapshot() if o.operator == "op1")
    assert (op.state, op.reason) == ("paused", "istirahat siang")


async def test_wall_queue_grows_and_shrinks_and_a_kpi_moves(daemon_factory, phones,
                                                            page) -> None:
    daemon = await daemon_factory(logged_in=[], api={"tokens": TOKENS},
                                  queue={"no_operator_timeout": 120, "wrapup": 0})
    await sign_in(page, SUPERVISOR)
    length = page.locator("#queue-length")
    await expect(length).to_have_text("0")
    answered_today = page.locator("#kpi-answered .kpi-value")
    await expect(answered_today).not_to_have_text("—")
    before = int(await answered_today.inner_text())

    numbers = [mobile_number() for _ in range(3)]
    for waiting, n in enumerate(numbers, start=1):  # one after the other: a known order
        await phones.citizen(n, MOBILE, hold=25.0, audio=phones.pcaps.speech(10))
        await expect(length).to_have_text(str(waiting), timeout=15_000)
    await expect(page.locator(".queue-row")).to_have_count(3)
    await expect(page.locator(".queue-row .number")).to_have_text([e164(n) for n in numbers])
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "console-wall.png"), full_page=True)

    for op, left in ((1, "2"), (2, "1"), (3, "0")):
        await phones.operator(op, ring=0.3, talk=1.0)
        assert await post(ADMIN, f"/operators/op{op}/state", {"state": "available"}) == 200
        await expect(length).to_have_text(left, timeout=15_000)
        await expect(page.locator(f'.op-row[data-operator="op{op}"]')).not_to_contain_text(
            "Keluar log")

    # The calls end (each operator hangs up after 1 s): today's answered calls move by three.
    await expect(answered_today).to_have_text(str(before + 3), timeout=20_000)
    await wait_for(lambda: not daemon.stasis.sessions, 15, "every call ended")


async def test_refusals_and_the_admin_blocklist_on_screen(daemon_factory, page) -> None:
    await daemon_factory(logged_in=[], api={"tokens": TOKENS})
    await sign_in(page, AGENCY)
    await expect(page.locator("#sign-in-error")).to_contain_text("forbidden")
    await sign_in(page, "no-such-token-at-all-here")
    await expect(page.locator("#sign-in-error")).to_contain_text("unauthorised")

    await sign_in(page, ADMIN)
    await page.fill("#block-number", "12345")
    await page.fill("#block-reason", "test")
    await page.click("#block-button")
    await expect(page.locator("#toast")).to_contain_text("bad_number")
    number = mobile_number()
    await page.fill("#block-number", number)
    await page.fill("#block-hours", "2")
    await page.fill("#block-reason", "ancaman berulang")
    await page.click("#block-button")
    row = page.locator(f'.block-row[data-number="{e164(number)}"]')
    await expect(row).to_contain_text("ancaman berulang")
    page.once("dialog", lambda d: d.accept("banding diterima"))
    await row.get_by_role("button", name="Buka blokir").click()
    await expect(row).to_have_count(0)

    await page.click("#lang")
    await expect(page.locator("#wall-queue h2")).to_contain_text("Queue")

