"""What an event tells parents on its pages. Lévis: "des agents sont présents pour vous
aider (418 839-2002), le premier jour d'inscription entre 19 h et 21 h": an event names
its help line and hours, the public event answers them, and the waiting room and
registration pages show them in the page's language; a bad phone is refused. And the
registration conditions' text, in full above the checkbox."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.conftest import AUTH, create_event, operator, schedule, wait_for

Client = TestClient[Any, Any]
LEVIS = {
    "phone": "418 839-2002",
    "hours_fr": "le premier soir de 19 h à 21 h",
    "hours_en": "the first evening from 7 to 9 p.m.",
}


async def test_the_help_line_is_on_the_event_and_the_pages(client: Client, redis: Redis) -> None:
    await create_event(client, redis, opens_in=60, help=LEVIS)
    event = await (await client.get("/api/v1/events/camp")).json()
    assert event["help"] == LEVIS

    async def shown() -> bool:
        page = await client.get("/events/camp/?lang=fr")
        return 'href="tel:418839-2002"' in await page.text()

    await wait_for(shown)  # the gateway's view of the event has refreshed
    french = await (await client.get("/events/camp/?lang=fr")).text()
    assert "Des agents vous répondent" in french and "le premier soir de 19 h à 21 h" in french
    english = await (await client.get("/register/camp/?lang=en")).text()
    assert "Our agents answer" in english and "the first evening from 7 to 9 p.m." in english
    assert "19 h" not in english


async def test_no_help_line_shows_none_and_a_bad_one_is_refused(
    client: Client, redis: Redis
) -> None:
    await create_event(client, redis, opens_in=60)
    assert (await (await client.get("/api/v1/events/camp")).json())["help"] is None
    assert 'id="help-line"' not in await (await client.get("/events/camp/")).text()
    for bad in ({"phone": "<script>"}, {"phone": "418 839-2002", "hours_fr": "x" * 201},
                {"hours_fr": "19 h"}, {"phone": "418 839-2002", "email": "x@y.z"}):  # fmt: skip
        body = await schedule(redis, opens_in=60, help=bad)
        resp = await operator(client).put("/admin/v1/events/other", json=body, headers=AUTH)
        assert resp.status == 422, (bad, await resp.text())


async def test_the_conditions_are_shown_in_full_above_their_checkbox(
    client: Client, redis: Redis
) -> None:
    """The conditions' text, not only a checkbox's label (Lévis step 5), in the page's
    language, paragraph by paragraph, escaped; both languages are required."""
    conditions = {
        "fr": "Le paiement est exigé à l'inscription.\n\n"
        "Aucun remboursement <b>après</b> le 1er juin.",
        "en": "Payment is due at registration.\n\nNo refund after June 1.",
    }
    await create_event(client, redis, opens_in=60, conditions=conditions)

    async def shown() -> bool:
        page = await client.get("/register/camp/?lang=fr")
        return 'id="conditions-text"' in await page.text()

    await wait_for(shown)
    french = await (await client.get("/register/camp/?lang=fr")).text()
    assert "<p>Le paiement est exigé à l&#39;inscription.</p>" in french
    assert "&lt;b&gt;après&lt;/b&gt;" in french  # the operator's text is text, not HTML
    english = await (await client.get("/register/camp/?lang=en")).text()
    assert "<p>No refund after June 1.</p>" in english and "exigé" not in english
    body = await schedule(redis, opens_in=60, conditions={"fr": "Seulement en français."})
    resp = await operator(client).put("/admin/v1/events/other", json=body, headers=AUTH)
    assert resp.status == 422
