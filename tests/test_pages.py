"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright, against
the real stack (gateway, queue leader, cart service, payment adapter, SMTP, SQLite).

Screenshots of the main screens go to a temporary folder, or to ``docs/screenshots`` when
``WAITROOM_SCREENSHOTS`` names it (``make screenshots``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import (
    Browser,
    Locator,
    Page,
    Route,
    ViewportSize,
    async_playwright,
    expect,
)
from redis.asyncio import Redis
from sqlalchemy import func, select

from cart_service.ledger import registrations
from gateway.i18n import EN, FR
from payment_adapter.store import payments
from queue_service.service import QueueService
from tests.conftest import AUTH, create_event, gateway_client, join, operator, poll, wait_for
from tests.registration import (
    ANNE,
    EVENT,
    ROY,
    Stack,
    registration_stack,
)
from tests.support.a11y import serious_violations
from tests.support.tools import unavailable
from waitroom.settings import Settings

CHROMIUM = "/usr/bin/chromium"
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1280, height=900)
STATIC = Path(__file__).resolve().parent.parent / "gateway" / "static"
TEMPLATES = STATIC.parent / "templates"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        unavailable(f"no {CHROMIUM} here (apt-get install chromium)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("WAITROOM_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"


async def _count(s: Stack, table: Any) -> int:
    async with s.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _enter_draw(page: Page, phone: str) -> Locator:
    """The Roys name their family on the waiting room page's draw form; the form."""
    form = page.locator("#wr-family")
    await expect(form).to_be_visible(timeout=15_000)
    await form.locator("[name=client_number]").fill(ROY["client_number"])
    await form.locator("[name=phone]").fill(phone)
    await form.locator("button").click()
    return form


async def _card(page: Page, number: str) -> None:
    """Type a card into the payment provider's hosted fields (its own frame) and submit it:
    the frame hands the page a one-time token, never the card."""
    frame = page.frame_locator("#card-frame")
    await frame.locator("[name=number]").fill(number)
    await frame.locator("[name=expiry]").fill("12/30")
    await frame.locator("[name=cvv]").fill("123")
    await frame.locator("button").click()


async def _snap(page: Page, shots: Path, name: str) -> None:
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


async def test_a_parent_waits_is_admitted_registers_two_children_and_pays(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    sqlite_url: str,
    aiohttp_client: ClientFactory,
    browser: Browser,
    shots: Path,
) -> None:
    rules = {"opens_in": 4, "prequeue_order": "fifo", "max_active": 1}
    async with registration_stack(
        settings, redis, sqlite_url, aiohttp_client, event_rules=rules
    ) as s:
        first = await join(s.client, EVENT)  # someone who came earlier takes the only slot
        base = str(s.client.make_url("/"))
        context = await browser.new_context(viewport=DESKTOP, locale="fr-CA")
        page = await context.new_page()
        await page.goto(base + f"events/{EVENT}/")
        # The pre-queue: the countdown to the draw and the draw's commitment.
        await expect(page.locator("#wr-message")).to_contain_text("tirées au sort")
        await expect(page.locator("#wr-countdown-label")).to_have_text("Tirage au sort dans")
        await expect(page.locator("#wr-commitment")).to_have_text(re.compile("^[0-9a-f]{64}$"))
        await _snap(page, shots, "waiting-prequeue-desktop")
        # Drawn: the first arrival is admitted, this parent waits at position 1.
        await expect(page.locator("#wr-position")).to_have_text(
            "Votre position : 1", timeout=15_000
        )
        assert await page.get_attribute("#wr-position", "aria-live") == "polite"
        await expect(page.locator("#wr-eta")).not_to_be_empty()
        await page.set_viewport_size(PHONE)
        await _snap(page, shots, "waiting-position-phone")
        assert await serious_violations(page) == []  # axe-core: waiting, with a position
        await page.set_viewport_size(DESKTOP)
        resp = await s.client.delete(f"/api/v1/events/{EVENT}/tickets/{first['ticket_id']}")
        assert resp.status == 204  # the first session ends: this parent's turn
        await page.wait_for_url(re.compile(f"/register/{EVENT}/"), timeout=15_000)
        # Step 1: identify, search by park and age group.
        await page.fill("#family-form [name=client_number]", ROY["client_number"])
        await page.fill("#family-form [name=phone]", "(418) 839-2002")
        await page.click("#family-form button")
        await expect(page.locator("#family-done")).to_have_text("Dossier 100234 identifié.")
        await page.check("#parks input[value='Parc A']")
        await page.check("#age-groups input[value='7-8 ans']")
        await page.click("#search-form button")
        await page.select_option("#participant", "P102")  # Léa
        for activity in ("a78-w1", "a78-w2"):
            await page.click(f"button[data-activity='{activity}']")
            await expect(
                page.locator(f"tr:has(button[data-activity='{activity}']) .outcome")
            ).to_have_text("Ajouté au panier.")
        await _snap(page, shots, "register-search-desktop")
        steps = {"search": await serious_violations(page)}
        # Step 2: the cart; a second child added to the family and to the same weeks.
        await page.click("a[data-step=cart]")
        await expect(page.locator("#hold")).to_contain_text("Panier réservé jusqu'à")
        await page.fill("#member-form [name=first_name]", "Rose")
        await page.fill("#member-form [name=last_name]", "Roy")
        await page.fill("#member-form [name=birth_date]", "2019-02-01")
        await page.click("#member-form button")
        # Added online: marked until the office validates her (Québec FAQ 4).
        await page.select_option(
            "#duplicate-form select", label="Rose Roy (en attente de validation)"
        )
        await page.click("#duplicate-form button")
        await expect(page.locator("#cart-items li")).to_have_count(4)
        await page.set_viewport_size(PHONE)
        await _snap(page, shots, "register-cart-phone")
        steps["cart"] = await serious_violations(page)
        await page.set_viewport_size(DESKTOP)
        # Step 3: payer (a wrong one first: the error sits by the field) and conditions.
        await page.click("a[data-step=payer]")
        await page.select_option("#payer-form [name=member]", "P101")  # Marc: not the holder
        await page.fill("#payer-form [name=phone]", "4188392002")
        await page.fill("#payer-form [name=email]", "anne.roy@example.org")
        await page.click("#payer-form button")
        await expect(page.locator("#payer-form [data-error=member]")).to_contain_text(
            "responsable du dossier doit payer"
        )
        await page.select_option("#payer-form [name=member]", ANNE)
        await page.click("#payer-form button")
        await expect(page.locator("#payer-done")).to_have_text("Payeur confirmé : Anne Roy.")
        steps["payer"] = await serious_violations(page)
        await page.check("#conditions-form [name=accepted]")
        await page.click("#conditions-form button")
        await expect(page).to_have_url(re.compile("#pay$"))
        # Step 4: pay with a sandbox card, as typed with spaces.
        await expect(page.locator("#pay-button")).to_contain_text("500,00")
        steps["pay"] = await serious_violations(page)
        await _card(page, "4242 4242 4242 4242")  # in the provider's frame, not our page
        await expect(page.locator("#card-ready")).to_contain_text("****4242")
        await page.click("#pay-button")
        await expect(page.locator("#receipt h2")).to_have_text(
            "Paiement effectué avec succès – Confirmation"
        )
        await expect(page.locator("#receipt-cart-number")).to_have_text(re.compile(r"^\d{8}$"))
        await expect(page.locator("#receipt tbody tr")).to_have_count(4)
        await _snap(page, shots, "register-receipt-desktop")
        steps["receipt"] = await serious_violations(page)
        assert {step: v for step, v in steps.items() if v} == {}  # axe-core, every step
        assert await _count(s, registrations) == 4
        await context.close()


async def test_a_declined_card_then_a_retry_and_the_back_button(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    sqlite_url: str,
    aiohttp_client: ClientFactory,
    browser: Browser,
    shots: Path,
) -> None:
    async with registration_stack(settings, redis, sqlite_url, aiohttp_client) as s:
        headers = await s.admitted()
        await s.call("POST", "/cart/family", headers, ROY)
        await s.call(
            "POST", "/cart/items", headers, {"participant": "P102", "activity_ids": ["a78-w1"]}
        )
        payer = {**ROY, "member": ANNE, "email": "anne.roy@example.org"}
        await s.call("PUT", "/cart/payer", headers, payer)
        await s.call("PUT", "/cart/conditions", headers, {"accepted": True})
        context = await browser.new_context(viewport=DESKTOP, locale="en-CA")
        token = headers["Authorization"].removeprefix("Bearer ")
        await context.add_init_script(
            f"sessionStorage.setItem('wr_admission_{EVENT}', JSON.stringify({{token: '{token}'}}))"
        )
        page = await context.new_page()
        base = str(s.client.make_url("/"))
        await page.goto(base + f"register/{EVENT}/#cart")  # Accept-Language: English
        await expect(page.locator("h1")).to_have_text("Registration")
        await expect(page.locator("#cart-items li")).to_have_count(1)
        await page.click("#extend")  # twenty more minutes, once
        await expect(page.locator("#extend")).to_have_text("Extra time already used")
        await expect(page.locator("#extend")).to_be_disabled()
        await page.click("a[data-step=pay]")
        # Back and forward between steps: the cart is read again, nothing lost or doubled.
        await page.go_back()
        await expect(page.locator("#step-cart")).to_be_visible()
        await page.go_forward()
        await expect(page.locator("#step-pay")).to_be_visible()
        await page.click("#pay-button")  # no card yet
        await expect(page.locator("#pay-form [data-error=card_token]")).to_contain_text(
            "First enter your card"
        )
        await _card(page, "4000 0000 0000 0002")
        await expect(page.locator("#card-ready")).to_contain_text("****0002")
        await page.click("#pay-button")
        await expect(page.locator("#pay-form [data-error='']")).to_contain_text(
            "Payment declined (card declined by the bank)"
        )
        await _card(page, "4242")  # a wrong number: the provider's frame says, by the field
        await expect(page.locator("#pay-form [data-error=number]")).to_have_text(
            "Invalid card number."
        )
        await _snap(page, shots, "register-declined-desktop")
        await _card(page, "5555-5555-5555-4444")
        await expect(page.locator("#card-ready")).to_contain_text("****4444")
        await page.click("#pay-button")
        await expect(page.locator("#receipt h2")).to_have_text("Payment successful – Confirmation")
        # Back after paying: still the receipt; no second payment, no second registration.
        await page.go_back()
        await expect(page.locator("#receipt h2")).to_be_visible()
        await page.reload()
        await expect(page.locator("#receipt h2")).to_be_visible()
        assert await _count(s, registrations) == 1
        assert await _count(s, payments) == 2  # the declined attempt and the paid one
        # The reprint form, from the receipt's two numbers.
        cart_number = await page.locator("#receipt-cart-number").inner_text()
        owner = await page.locator("#receipt-owner-number").inner_text()
        await page.goto(base + "receipts/?lang=fr")
        await page.fill("[name=cart_number]", cart_number)
        await page.fill("[name=owner_number]", "WRONG123")
        await page.click("#reprint-form button")
        await expect(page.locator("#reprint-form [data-error='']")).to_have_text(
            "Aucun reçu ne correspond à ces numéros."
        )
        await page.fill("[name=owner_number]", owner)
        await page.click("#reprint-form button")
        await expect(page.locator("#receipt-cart-number")).to_have_text(cart_number)
        await context.close()


async def test_a_requeued_ticket_shows_its_notice_and_english_is_one_click_away(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    sqlite_url: str,
    aiohttp_client: ClientFactory,
    browser: Browser,
) -> None:
    rules = {"opens_in": 0.5, "prequeue_order": "fifo", "max_active": 1, "heartbeat_timeout_s": 5}
    async with registration_stack(
        settings, redis, sqlite_url, aiohttp_client, event_rules=rules
    ) as s:
        first, silent = await join(s.client, EVENT), await join(s.client, EVENT)
        awake = await join(s.client, EVENT)

        async def admitted() -> bool:
            return bool((await poll(s.client, first))["status"] == "admitted")

        await wait_for(admitted)
        # The silent ticket's turn comes while it has sent no heartbeat for longer than the
        # 5 s timeout and its 1.25 s grace: it loses priority; the awake one, behind it,
        # takes the slot, so the silent one waits again, at the end of the line.
        for _ in range(15):
            await poll(s.client, awake)
            await asyncio.sleep(0.5)
        await s.client.delete(f"/api/v1/events/{EVENT}/tickets/{first['ticket_id']}")
        await wait_for(lambda: _skipped(s), timeout_s=20)
        context = await browser.new_context(viewport=PHONE, locale="fr-CA")
        base = str(s.client.make_url("/"))
        await context.add_cookies(
            [{"name": f"wr_{EVENT}", "value": silent["ticket_id"], "url": base}]
        )
        page = await context.new_page()
        await page.goto(base + f"events/{EVENT}/")
        notice = page.locator("#wr-requeued")
        await expect(notice).to_be_visible(timeout=15_000)
        await expect(notice).to_contain_text("replacé en fin de file")
        assert await page.get_attribute("html", "lang") == "fr"
        await page.click("#lang-switch")
        await expect(page.locator("h1")).to_have_text("Waiting room")
        assert await page.get_attribute("html", "lang") == "en"
        await expect(notice).to_contain_text("put back at the end of the line", timeout=15_000)
        # Busy: the page backs off and says so instead of hammering the service.
        polls: list[str] = []

        async def unavailable(route: Route) -> None:
            polls.append(route.request.url)
            await route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body='{"error": "unavailable"}',
            )

        await page.route(re.compile(r"/tickets/[^/]+$"), unavailable)
        await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        await expect(page.locator("#wr-busy")).to_contain_text(
            "The service is very busy", timeout=15_000
        )
        await asyncio.sleep(3)
        assert 1 <= len(polls) <= 3  # backing off: 1 s, then 2 s (with jitter), not a flood
        await context.close()


async def test_a_parent_browses_the_catalogue_days_before_the_night(
    settings: Settings,
    redis: Redis,
    sqlite_url: str,
    aiohttp_client: ClientFactory,
    browser: Browser,
) -> None:
    rules = {"opens_in": 3 * 86400, "closes_in": 4 * 86400}  # browsable from now on
    async with registration_stack(
        settings, redis, sqlite_url, aiohttp_client, event_rules=rules
    ) as s:
        base = str(s.client.make_url("/"))
        context = await browser.new_context(viewport=PHONE, locale="en-CA")
        page = await context.new_page()
        await page.goto(base + f"events/{EVENT}/")
        async with context.expect_page() as opened:
            await page.click("a[href='/register/camp/']")
        browse = await opened.value
        await expect(browse.locator("#browse-note")).to_contain_text("Browsing")
        await expect(browse.locator("#family-form")).to_be_hidden()  # nothing to hold
        await expect(browse.locator("nav[aria-label=steps]")).to_be_hidden()
        await browse.check("#parks input[value='Parc B']")
        await browse.click("#search-form button")
        row = browse.locator("#results tr", has_text="7-8 ans")
        await expect(row).to_contain_text("Few places left")  # one place of one
        await expect(browse.locator("#results button")).to_have_count(0)
        await context.close()


async def test_a_parent_behind_a_busy_shared_address_proves_work_and_gets_in_line(
    settings: Settings,
    redis: Redis,
    aiohttp_client: ClientFactory,
    browser: Browser,
) -> None:
    limited = {"join_limit": 1, "join_window_s": 60, "join_proof_bits": 12}
    client = await gateway_client(aiohttp_client, settings.model_copy(update=limited))
    await create_event(client, redis, opens_in=600)
    await join(client)  # someone else on the same address used its one free join
    context = await browser.new_context(viewport=PHONE, locale="fr-CA")
    page = await context.new_page()
    joins: list[int] = []
    page.on("response", lambda r: joins.append(r.status) if r.request.method == "POST" else None)
    await page.goto(str(client.make_url("/events/camp/")))
    await expect(page.locator("#wr-message")).to_contain_text("tirées au sort", timeout=20_000)
    assert joins == [429, 201]  # refused once, then in line with its proof
    await context.close()


async def test_leaving_the_line_during_an_outage_is_tried_again_until_it_lands(
    client: TestClient[Any, Any], redis: Redis, browser: Browser
) -> None:
    """Issue 11: a leave that fails during an outage is retried by the page. The first two
    DELETEs meet a gateway answering 503; the page says it will try again, and the third
    lands: the ticket is gone from the line."""
    await create_event(client, redis, opens_in=600)
    context = await browser.new_context(viewport=PHONE, locale="fr-CA")
    page = await context.new_page()
    deletes: list[int] = []

    async def outage(route: Any) -> None:
        if route.request.method != "DELETE":
            await route.continue_()
            return
        if len(deletes) < 2:
            deletes.append(503)
            await route.fulfill(status=503, json={"error": "unavailable"},
                                headers={"Retry-After": "1"})  # fmt: skip
            return
        deletes.append(0)
        await route.continue_()

    await page.route("**/api/v1/events/camp/tickets/*", outage)
    await page.goto(str(client.make_url("/events/camp/")))
    await expect(page.locator("#wr-leave")).to_be_visible(timeout=20_000)
    await page.click("#wr-leave")
    await expect(page.locator("#wr-leaving")).to_contain_text("nouvel essai", timeout=10_000)
    await expect(page.locator("#wr-leaving")).to_contain_text("quitté la file", timeout=20_000)
    assert deletes == [503, 503, 0]
    stats = await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)
    counts = (await stats.json())["counts"]
    assert (counts["prequeue"], counts["left"]) == (0, 1), counts
    await context.close()


async def test_a_family_enters_the_draw_once_from_the_waiting_room(
    settings: Settings,
    redis: Redis,
    sqlite_url: str,
    aiohttp_client: ClientFactory,
    browser: Browser,
) -> None:
    rules = {"opens_in": 600, "one_per_family": True}
    async with registration_stack(
        settings, redis, sqlite_url, aiohttp_client, event_rules=rules
    ) as s:
        base = str(s.client.make_url("/"))
        context = await browser.new_context(viewport=PHONE, locale="fr-CA")
        page = await context.new_page()
        await page.goto(base + f"events/{EVENT}/")
        form = await _enter_draw(page, "418 839-2002")
        await expect(page.locator("#wr-family-done")).to_contain_text("participe au tirage")
        await expect(form).to_be_hidden()
        device = await browser.new_context(viewport=PHONE, locale="fr-CA")  # a second phone
        other = await device.new_page()
        await other.goto(base + f"events/{EVENT}/")
        form = await _enter_draw(other, "4188392002")
        await expect(form.locator('[data-error=""]')).to_contain_text("un autre billet")
        await device.close()
        await context.close()


async def test_every_page_has_no_serious_accessibility_violation(
    settings: Settings,
    redis: Redis,
    sqlite_url: str,
    aiohttp_client: ClientFactory,
    browser: Browser,
) -> None:
    """axe-core on every page a parent meets before admission, in both languages (the
    steps behind the door are checked in the walk-through test above)."""
    rules = {"opens_in": 600, "one_per_family": True}
    async with registration_stack(
        settings, redis, sqlite_url, aiohttp_client, event_rules=rules
    ) as s:
        base = str(s.client.make_url("/"))
        found: dict[str, list[str]] = {}
        for lang, locale in (("fr", "fr-CA"), ("en", "en-CA")):
            context = await browser.new_context(viewport=PHONE, locale=locale)
            page = await context.new_page()
            await page.goto(base + f"events/{EVENT}/?lang={lang}")
            await expect(page.locator("#wr-family")).to_be_visible(timeout=15_000)
            found[f"waiting room ({lang})"] = await serious_violations(page)
            await page.goto(base + f"events/{EVENT}/draw?lang={lang}")
            found[f"draw ({lang})"] = await serious_violations(page)
            await page.goto(base + f"register/{EVENT}/?lang={lang}")
            await expect(page.locator("#browse-note")).to_be_visible()
            await page.check("#parks input[value='Parc A']")
            await page.click("#search-form button")
            await expect(page.locator("#results table")).to_be_visible()
            found[f"browsing ({lang})"] = await serious_violations(page)
            await page.goto(base + f"receipts/?lang={lang}")
            found[f"receipt reprint ({lang})"] = await serious_violations(page)
            await context.close()
        assert {page: v for page, v in found.items() if v} == {}


async def _skipped(s: Stack) -> bool:
    resp = await operator(s.client).get(
        f"/admin/v1/events/{EVENT}/stats", headers={"Authorization": "Bearer test-admin-token"}
    )
    body = await resp.json()
    return int(body["lost_priority_total"]) >= 1


async def test_pages_are_light_and_every_text_exists_in_both_languages(
    client: TestClient[Any, Any],
) -> None:
    assert FR.keys() == EN.keys()
    used: set[str] = set()
    for path in [*STATIC.glob("*.js"), *TEMPLATES.glob("*.j2")]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_.]+)["']""", path.read_text("utf-8")))
    # t("con.state." ~ state): a prefix, each of whose keys the template may ask for.
    prefixes = {key for key in used if key.endswith(".")}
    assert all(any(k.startswith(p) for k in FR) for p in prefixes), prefixes
    used -= prefixes
    assert used and used <= FR.keys(), used - FR.keys()
    for page, lang, title in (
        ("/events/camp/", "fr", "Salle d'attente"),
        ("/register/camp/?lang=en", "en", "Registration"),
        ("/receipts/", "en", "Reprint a receipt"),  # the choice made by ?lang= is kept
        ("/receipts/?lang=fr", "fr", "Réimprimer un reçu"),
    ):
        resp = await client.get(page)
        html = await resp.text()
        assert resp.status == 200 and resp.headers["Content-Language"] == lang
        assert f"<h1>{title}</h1>" in unescape(html)
        weight = len(html.encode())
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):
            asset_resp = await client.get(asset)
            assert asset_resp.status == 200
            weight += len(await asset_resp.read())
        assert weight < 50 * 1024, (page, weight)
    client.session.cookie_jar.clear()
    resp = await client.get("/events/camp/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert resp.headers["Content-Language"] == "en"
    resp = await client.get("/events/Not_An..Id/")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
