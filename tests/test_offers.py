"""Waiting lists that call back (Québec FAQ 6, issue 13): a freed seat, whatever freed it
(an item removed, a registration cancelled), is offered to the first family on the
list by email, held for it; newcomers do not jump the line; the link opens the
registration with the seat in the family's own cart; an offer not taken lapses and the
seat goes to the next family; two cart replicas never offer one seat twice."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from sqlalchemy import select, update

from cart_service import exports, offers
from cart_service.ledger import offers as offers_table
from cart_service.ledger import registrations
from tests.conftest import AUTH, operator, wait_for
from tests.registration import (
    ANNE,
    APPROVE,
    EMMA,
    EVENT,
    JULIE,
    ROY,
    TREMBLAY,
    ZOE,
    Stack,
)
from tests.test_registration_api import _checkout, stack  # noqa: F401
from waitroom.db import make_engine

WEEK = "b56-w1"  # one place, ages 5-6: Zoé Roy (5) and Emma Tremblay (6) both fit
TREMBLAY_MAIL = "famille.tremblay@example.org"


def _offers_to(s: Stack, address: str) -> list[Any]:
    return [m for m in s.mail.messages if m["To"] == address and "offerte" in str(m["Subject"])]


async def _offer_link(s: Stack, address: str, n: int = 1) -> str:
    """The secret of the ``n``-th offer emailed to ``address``, once it has arrived."""

    async def arrived() -> bool:
        return len(_offers_to(s, address)) >= n

    await wait_for(arrived, 10)
    text = _offers_to(s, address)[n - 1].get_content()
    found = re.search(rf"/register/{EVENT}/#offer=([A-Za-z0-9_-]+)", text)
    assert found, text
    return found.group(1)


async def _claim(s: Stack, token: str) -> tuple[int, Any]:
    resp = await s.client.post(f"/api/v1/events/{EVENT}/offers/claim", json={"token": token})
    return resp.status, await resp.json()


async def _wait(s: Stack, family: dict[str, str], child: str) -> dict[str, str]:
    """A session of ``family`` puts ``child`` on the week's waiting list."""
    headers = await s.admitted()
    await s.call("POST", "/cart/family", headers, family)
    status, full = await s.call(
        "POST", "/cart/items", headers, {"participant": child, "activity_ids": [WEEK]}
    )
    assert full["outcomes"][0]["outcome"] == "full", full
    status, entry = await s.call(
        "POST", "/cart/waiting-list", headers, {"activity_id": WEEK, "participant": child}
    )
    assert status == 201, entry
    return headers


async def test_a_removed_item_is_offered_to_the_waiting_family_and_taken_by_its_link(
    stack: Stack,  # noqa: F811
) -> None:
    s = stack
    roy = await s.admitted()
    await s.call("POST", "/cart/family", roy, ROY)
    status, held = await s.call(
        "POST", "/cart/items", roy, {"participant": ZOE, "activity_ids": [WEEK]}
    )
    assert held["outcomes"][0]["outcome"] == "held"
    tremblay = await _wait(s, TREMBLAY, EMMA)
    status, gone = await s.call("DELETE", f"/cart/items/{WEEK}/{ZOE}", roy)
    assert status == 200, gone
    # The freed seat is owed to Emma: the Roys cannot take it back meanwhile.
    status, again = await s.call(
        "POST", "/cart/items", roy, {"participant": ZOE, "activity_ids": [WEEK]}
    )
    assert again["outcomes"][0]["outcome"] == "full", again
    token = await _offer_link(s, TREMBLAY_MAIL)
    status, cart = await s.call("GET", "/cart", tremblay)
    assert [(w["participant"], w["position"]) for w in cart["waiting"]] == [(EMMA, 0)]
    assert cart["waiting"][0]["offered_until"]

    status, claimed = await _claim(s, token)
    assert status == 200, claimed
    assert (claimed["participant"], claimed["client_number"]) == (EMMA, "100871")
    offer = {"Authorization": f"Bearer {claimed['admission']['token']}"}
    status, cart = await s.call("GET", "/cart", offer)
    assert [(i["activity"]["id"], i["participant"]) for i in cart["items"]] == [(WEEK, EMMA)]
    assert cart["client_number"] == "100871" and cart["waiting"] == []
    status, twice = await _claim(s, token)  # the link opened again: the same cart
    assert status == 200 and twice["participant"] == EMMA
    # The session registers the Tremblays only, and pays as any other.
    status, other = await s.call("POST", "/cart/family", offer, ROY)
    assert (status, other["error"]) == (409, "family_mismatch"), other
    await s.call("POST", "/cart/family", offer, TREMBLAY)
    await s.call("PUT", "/cart/payer", offer, {**TREMBLAY, "member": JULIE, "email": TREMBLAY_MAIL})
    await s.call("PUT", "/cart/conditions", offer, {"accepted": True})
    status, paid = await _checkout(s, offer, APPROVE)
    assert (status, paid["outcome"]) == (200, "paid"), paid
    async with s.engine.connect() as conn:
        assert (await conn.execute(select(registrations.c.participant))).scalars().all() == [EMMA]


async def test_a_cancelled_registration_is_offered_and_an_offer_not_taken_passes_on(
    stack: Stack,  # noqa: F811
) -> None:
    """The week's place is paid by the Roys; Emma, then Lou (a child the Tremblays add
    online), wait. Staff cancel the Roys' registration: Emma is offered the seat; her
    offer runs out; it lapses and Lou is offered it; Emma's link is then refused."""
    s = stack
    roy = await s.admitted()
    await s.call("POST", "/cart/family", roy, ROY)
    await s.call("POST", "/cart/items", roy, {"participant": ZOE, "activity_ids": [WEEK]})
    await s.call(
        "PUT", "/cart/payer", roy, {**ROY, "member": ANNE, "email": "anne.roy@example.org"}
    )
    await s.call("PUT", "/cart/conditions", roy, {"accepted": True})
    status, paid = await _checkout(s, roy, APPROVE)
    assert paid["outcome"] == "paid", paid
    tremblay = await _wait(s, TREMBLAY, EMMA)
    status, cart = await s.call(
        "POST", "/cart/members", tremblay,
        {"first_name": "Lou", "last_name": "Tremblay", "birth_date": "2021-09-01",
         "relationship": "child", "class_level": None},
    )  # fmt: skip
    assert status == 201, cart
    lou = next(m["id"] for m in cart["members"] if m["first_name"] == "Lou")
    status, entry = await s.call(
        "POST", "/cart/waiting-list", tremblay, {"activity_id": WEEK, "participant": lou}
    )
    assert (status, entry["position"]) == (201, 2)

    header, rows = await exports.export(s.engine, "registrations", EVENT)
    zoe = next(r[header.index("registration_id")] for r in rows if ZOE in r)
    resp = await operator(s.client).post(
        f"/admin/v1/events/{EVENT}/registrations/{zoe}/cancel", headers=AUTH
    )
    assert resp.status == 200, await resp.text()
    first = await _offer_link(s, TREMBLAY_MAIL)
    assert "Emma Tremblay" in _offers_to(s, TREMBLAY_MAIL)[0].get_content()
    async with s.engine.begin() as conn:  # a day later: Emma's offer has run out
        await conn.execute(update(offers_table).values(expires_at_ms=int(time.time() * 1000) - 1))
    second = await _offer_link(s, TREMBLAY_MAIL, 2)
    assert "Lou Tremblay" in _offers_to(s, TREMBLAY_MAIL)[1].get_content()
    status, lapsed = await _claim(s, first)
    assert (status, lapsed["error"]) == (409, "offer_lapsed"), lapsed
    status, claimed = await _claim(s, second)
    assert (status, claimed["participant"]) == (200, lou), claimed
    status, unknown = await _claim(s, "x" * 32)
    assert (status, unknown["error"]) == (404, "unknown_offer")


async def test_two_replicas_calling_back_at_once_offer_each_seat_once(
    stack: Stack,  # noqa: F811
    ledger_url: str,
) -> None:
    """Two passes at once, on two engines (as two cart replicas would), beside the
    service's own: one offer, whichever pass made it."""
    s = stack
    roy = await s.admitted()
    await s.call("POST", "/cart/family", roy, ROY)
    await s.call("POST", "/cart/items", roy, {"participant": ZOE, "activity_ids": [WEEK]})
    await _wait(s, TREMBLAY, EMMA)
    other = make_engine(ledger_url)
    try:
        await s.call("DELETE", f"/cart/items/{WEEK}/{ZOE}", roy)
        now = int(time.time() * 1000)
        made = await asyncio.gather(
            *(
                offers.call_back(e, now, 60_000, "x@example.org", "http://x")
                for e in (s.engine, other)
            )
        )
    finally:
        await other.dispose()
    async with s.engine.connect() as conn:
        rows = (await conn.execute(select(offers_table.c.participant))).scalars().all()
    assert rows == [EMMA] and sum(made) <= 1  # the service's own pass may have made it
