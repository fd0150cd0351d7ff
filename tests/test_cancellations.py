"""Staff cancel a registration and refund it (issue 14): through the operator API, the
cart service moves it to cancellations (its seat frees at once), the payment adapter
refunds what was paid for it once under its own key (the sandbox provider records one
refund), and the family gets an email; asking again answers the same and refunds
nothing more; unknown registrations and missing tokens are refused."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from cart_service import exports
from payment_adapter.store import refunds, sandbox_refunds
from tests.conftest import AUTH, operator, wait_for
from tests.registration import APPROVE, EVENT, LEA, Stack
from tests.test_registration_api import _checkout, _ready_to_pay, stack  # noqa: F401


async def _places_left(s: Stack, headers: dict[str, str], activity: str) -> int:
    _, found = await s.call("GET", "/catalogue?park=Parc+A", headers)
    return int(next(a for a in found["activities"] if a["id"] == activity)["places_left"])


async def _count(s: Stack, table: Any) -> int:
    async with s.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_cancelled_registration_frees_its_seat_and_is_refunded_once(
    stack: Stack,  # noqa: F811
) -> None:
    s = stack
    headers = await s.admitted()
    await _ready_to_pay(s, headers)
    status, paid = await _checkout(s, headers, APPROVE)
    assert (status, paid["outcome"]) == (200, "paid"), paid
    number = paid["receipt"]["cart_number"]
    header, rows = await exports.export(s.engine, "registrations", EVENT)
    registered = [dict(zip(header, row, strict=True)) for row in rows]
    week1 = next(r for r in registered if r["activity_id"] == "a78-w1")
    other = await s.admitted()
    before = await _places_left(s, other, "a78-w1")
    admin = operator(s.client)
    url = f"/admin/v1/events/{EVENT}/registrations/{week1['registration_id']}/cancel"
    who = {**AUTH, "X-Operator": "marie"}
    resp = await admin.post(url, json={"reason": "camp complet par erreur"}, headers=who)
    answer = await resp.json()
    assert resp.status == 200, answer
    assert answer == {
        "registration_id": week1["registration_id"], "activity_id": "a78-w1",
        "participant": LEA, "amount_cents": 12_500, "refund": "approved",
    }  # fmt: skip
    assert await _places_left(s, other, "a78-w1") == before + 1  # the seat is free now
    again = await admin.post(url, json={}, headers=who)
    assert (again.status, await again.json()) == (200, answer)  # the same, nothing more
    assert await _count(s, sandbox_refunds) == 1 and await _count(s, refunds) == 1
    _, remaining = await exports.export(s.engine, "registrations", EVENT)
    assert [r[header.index("activity_id")] for r in remaining] == ["a78-w2"]

    async def emailed() -> bool:
        return any("Annulation" in str(m["Subject"]) and number in str(m["Subject"])
                   for m in s.mail.messages)  # fmt: skip

    await wait_for(emailed)
    mail = next(m for m in s.mail.messages if "Annulation" in str(m["Subject"]))
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "camp complet par erreur" in text and "125,00" in text and "refunded" in text
    assert mail["To"] == "anne.roy@example.org"


async def test_cancelling_is_refused_without_a_token_or_a_registration(
    stack: Stack,  # noqa: F811
) -> None:
    admin = operator(stack.client)
    url = f"/admin/v1/events/{EVENT}/registrations/999999/cancel"
    assert (await admin.post(url)).status == 401
    resp = await admin.post(url, headers=AUTH)
    assert (resp.status, (await resp.json())["error"]) == (404, "unknown_registration")
    resp = await admin.post(url.replace("999999", "12ab"), headers=AUTH)
    assert resp.status == 404
    resp = await admin.post(url, json={"reason": "x" * 501}, headers=AUTH)
    assert (resp.status, (await resp.json())["field"]) == (422, "reason")
