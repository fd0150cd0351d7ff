"""A "requests" night in Chromium (issue 13): a parent orders on the page (the order is
"En attente", nothing is charged), another family orders too, the team corrects a class
level and runs the allocation, both families get their result by email, and the parent's
reprinted receipt shows "Annulé — erreur de classe" beside the other's "Réservé"."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect
from redis.asyncio import Redis
from sqlalchemy import update

from cart_service.ledger import members
from queue_service.service import QueueService
from tests.conftest import wait_for
from tests.registration import ANNE, EMMA, EVENT, JULIE, LEA, ROY, TREMBLAY, registration_stack
from tests.support.a11y import serious_violations
from tests.test_pages import DESKTOP, ClientFactory, _snap, browser, shots, sqlite_url  # noqa: F401
from tests.test_requests_mode import CHESS, _allocate, _mails, _order, _receipt, _requests_event
from waitroom.settings import Settings


async def test_a_requests_night_ordered_on_the_page_then_allocated(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    sqlite_url: str,  # noqa: F811
    aiohttp_client: ClientFactory,
    browser: Browser,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    async with registration_stack(settings, redis, sqlite_url, aiohttp_client) as s:
        await _requests_event(s)
        emma = await _order(s, TREMBLAY, EMMA, JULIE, "famille.tremblay@example.org")
        base = str(s.client.make_url("/"))
        context = await browser.new_context(viewport=DESKTOP, locale="fr-CA")
        page = await context.new_page()
        await page.goto(base + f"events/{EVENT}/")
        await page.wait_for_url(re.compile(f"/register/{EVENT}/"), timeout=15_000)
        await page.fill("#family-form [name=client_number]", ROY["client_number"])
        await page.fill("#family-form [name=phone]", "418 839-2002")
        await page.click("#family-form button")
        await expect(page.locator("#family-done")).to_have_text("Dossier 100234 identifié.")
        await page.check("#parks input[value='École']")
        await page.click("#search-form button")
        await page.select_option("#participant", LEA)
        await page.click(f"button[data-activity='{CHESS}']")
        await expect(
            page.locator(f"tr:has(button[data-activity='{CHESS}']) .outcome")
        ).to_have_text("Ajouté au panier.")
        await page.click("a[data-step=payer]")
        await page.select_option("#payer-form [name=member]", ANNE)
        await page.fill("#payer-form [name=phone]", "4188392002")
        await page.fill("#payer-form [name=email]", "anne.roy@example.org")
        await page.click("#payer-form button")
        await expect(page.locator("#payer-done")).to_have_text("Payeur confirmé : Anne Roy.")
        await page.check("#conditions-form [name=accepted]")
        await page.click("#conditions-form button")
        await expect(page.locator("#pay-button")).to_have_text("Valider la commande")
        await expect(page.locator("#pay-requests")).to_contain_text("En attente")
        await expect(page.locator("#card-fields")).to_be_hidden()  # nothing charged
        await page.click("#pay-button")
        await expect(page.locator("#receipt h2")).to_have_text("Commande enregistrée — En attente")
        await expect(page.locator("#receipt td.booking-pending")).to_have_text("En attente")
        await expect(page.locator("#receipt")).to_contain_text("1m")
        await _snap(page, shots, "register-order-pending-desktop")
        assert await serious_violations(page) == []
        number = await page.locator("#receipt-cart-number").inner_text()
        owner = await page.locator("#receipt-owner-number").inner_text()

        async with s.engine.begin() as conn:  # the office: Léa starts 3rd grade, not 2nd
            await conn.execute(update(members).where(members.c.id == LEA).values(class_level=3))
        assert await _allocate(s) == {
            "reserved": 1, "cancelled": {"wrong_class_level": 1}, "orders": 2,
        }  # fmt: skip
        await wait_for(lambda: _mails(s, 4), 10)
        results = {
            str(m["To"]): m.get_content() for m in s.mail.messages if "attribution" in m["Subject"]
        }
        assert "Annulé (erreur de classe)" in results["anne.roy@example.org"]
        assert "Réservé" in results["famille.tremblay@example.org"]
        assert [x["status"] for x in (await _receipt(s, emma))["lines"]] == ["reserved"]

        await page.goto(base + "receipts/")
        await page.fill("#reprint-form [name=cart_number]", number)
        await page.fill("#reprint-form [name=owner_number]", owner)
        await page.click("#reprint-form button")
        await expect(page.locator("#receipt h2")).to_have_text(
            "Résultat de l'attribution des places"
        )
        await expect(page.locator("#receipt td.booking-cancelled")).to_have_text(
            "Annulé — erreur de classe"
        )
        await _snap(page, shots, "receipt-allocated-desktop")
        assert await serious_violations(page) == []
        await context.close()
