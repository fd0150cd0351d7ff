"""A waiting list's offer taken through its link in Chromium (Québec FAQ 6, issue 13):
the week's one seat frees, the first family on its list gets an email whose link opens
the registration with the seat already in its cart; the parent pays and gets the
receipt."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.registration import EMMA, EVENT, JULIE, ROY, TREMBLAY, ZOE, registration_stack
from tests.support.a11y import serious_violations
from tests.test_offers import TREMBLAY_MAIL, WEEK, _offer_link, _wait
from tests.test_pages import DESKTOP, ClientFactory, _card, _snap, browser, shots, sqlite_url  # noqa: F401
from waitroom.settings import Settings


async def test_an_offer_link_opens_the_registration_with_the_seat_held(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    sqlite_url: str,  # noqa: F811
    aiohttp_client: ClientFactory,
    browser: Browser,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    async with registration_stack(settings, redis, sqlite_url, aiohttp_client) as s:
        roy = await s.admitted()
        await s.call("POST", "/cart/family", roy, ROY)
        await s.call("POST", "/cart/items", roy, {"participant": ZOE, "activity_ids": [WEEK]})
        await _wait(s, TREMBLAY, EMMA)
        await s.call("DELETE", f"/cart/items/{WEEK}/{ZOE}", roy)  # the seat frees
        token = await _offer_link(s, TREMBLAY_MAIL)

        base = str(s.client.make_url("/"))
        context = await browser.new_context(viewport=DESKTOP, locale="fr-CA")
        page = await context.new_page()
        await page.goto(base + f"register/{EVENT}/#offer={token}")
        await expect(page).to_have_url(re.compile("#cart$"))
        await expect(page.locator("#cart-items li")).to_have_count(1)
        await expect(page.locator("#cart-items")).to_contain_text("Emma Tremblay")
        assert token not in page.url  # the secret does not stay in the address bar
        await _snap(page, shots, "register-offer-cart-desktop")
        assert await serious_violations(page) == []
        await page.click("a[data-step=payer]")
        await page.select_option("#payer-form [name=member]", JULIE)
        await page.fill("#payer-form [name=phone]", TREMBLAY["phone"])
        await page.fill("#payer-form [name=email]", TREMBLAY_MAIL)
        await page.click("#payer-form button")
        await expect(page.locator("#payer-done")).to_contain_text("Julie Tremblay")
        await page.check("#conditions-form [name=accepted]")
        await page.click("#conditions-form button")
        await _card(page, "4242 4242 4242 4242")
        await expect(page.locator("#card-ready")).to_contain_text("****4242")
        await page.click("#pay-button")
        await expect(page.locator("#receipt h2")).to_have_text(
            "Paiement effectué avec succès – Confirmation"
        )
        await expect(page.locator("#receipt tbody tr")).to_have_count(1)

        again = await context.new_page()  # the link opened again, once paid
        await again.goto(base + f"register/{EVENT}/#offer={token}")
        await expect(again.locator("#offer-error")).to_have_text("Cette offre a déjà été utilisée.")
        await context.close()
