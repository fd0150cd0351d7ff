"""Checkout and settlement, called directly against the ledger (SQLite and PostgreSQL),
with a scripted payment port: one charge per key, a declined card changes nothing, a
lost answer keeps the seats locked until the outcome is known."""

from __future__ import annotations

from collections import deque

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service import checkout, family_rules, holds, settlement
from cart_service.desk import Desk
from cart_service.ledger import outbox, registrations
from cart_service.mail import MAX_ATTEMPTS, Outbox
from cart_service.model import Session
from cart_service.payment_port import CardInput, PaymentResult, PaymentUnreachable
from tests.registration import load_catalogue
from tests.support.desk import NOW, ScriptedPayments, add_families, clock_of, make_desk
from waitroom.validation import FieldError, Refused

ROY = Session("camp", "roy")
CARD = CardInput("4242424242424242", "12/30", "123")


@pytest.fixture
def payments() -> ScriptedPayments:
    return ScriptedPayments()


@pytest.fixture
async def desk(ledger_engine: AsyncEngine, payments: ScriptedPayments) -> Desk:
    await load_catalogue(ledger_engine)
    await add_families(ledger_engine, 2)
    desk = make_desk(ledger_engine, payments)
    await family_rules.identify(desk, ROY, "900000", "418 555-0000")
    await holds.add_items(desk, ROY, "K0", ["a78-w1", "a78-w2"])
    return desk


async def _ready(desk: Desk) -> None:
    await family_rules.set_payer(desk, ROY, "A0", "900000", "4185550000", "a0@example.org")
    await checkout.accept_conditions(desk, ROY, True)


async def _count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_nothing_proceeds_without_payer_and_conditions(desk: Desk) -> None:
    with pytest.raises(Refused) as caught:
        await checkout.checkout(desk, ROY, "key-00000001", CARD)
    assert (caught.value.code, caught.value.field) == ("payer_required", "member")
    await family_rules.set_payer(desk, ROY, "A0", "900000", "4185550000", "a0@example.org")
    with pytest.raises(Refused) as caught:
        await checkout.checkout(desk, ROY, "key-00000001", CARD)
    assert caught.value.code == "conditions_not_accepted"
    with pytest.raises(FieldError):
        await checkout.accept_conditions(desk, ROY, False)


async def test_paid_once_per_key(desk: Desk, payments: ScriptedPayments) -> None:
    await _ready(desk)
    first = await checkout.checkout(desk, ROY, "key-00000001", CARD)
    assert first.outcome == "paid" and first.receipt is not None
    assert first.receipt.total_cents == 25_000 and len(first.receipt.cart_number) == 8
    assert [line.activity.places_left for line in first.receipt.lines] == [9, 9]
    again = await checkout.checkout(desk, ROY, "key-00000001", CARD)  # a double submit
    assert again.outcome == "paid" and again.receipt == first.receipt
    assert len(payments.charges) == 1
    assert await _count(desk.engine, registrations) == 2
    assert await _count(desk.engine, outbox) == 1
    # The outbox's gauges (alerts: backing up, giving up): one waiting, none given up;
    # an email that failed MAX_ATTEMPTS times counts as given up.
    mailer = Outbox(desk.engine, "127.0.0.1", 9, "x@example.org")
    assert await mailer.measure() == (1, 0)
    async with desk.engine.begin() as conn:
        await conn.execute(update(outbox).values(attempts=MAX_ATTEMPTS))
    assert await mailer.measure() == (0, 1)
    with pytest.raises(Refused) as caught:
        await holds.add_items(desk, ROY, "K0", ["a910-w2"])
    assert caught.value.code == "cart_closed"


async def test_a_declined_card_leaves_the_cart_as_it_was(
    desk: Desk, payments: ScriptedPayments
) -> None:
    await _ready(desk)
    clock_of(desk).ms += 10_000
    payments.script.append(PaymentResult("declined", "insufficient_funds"))
    result = await checkout.checkout(desk, ROY, "key-00000001", CARD)
    assert (result.outcome, result.decline_reason) == ("declined", "insufficient_funds")
    assert result.cart.status == "open" and len(result.cart.items) == 2
    assert result.cart.hold_expires_at_ms == NOW + 10_000 + 60_000  # restarted
    paid = await checkout.checkout(desk, ROY, "key-00000002", CARD)
    assert paid.outcome == "paid" and await _count(desk.engine, registrations) == 2


async def test_a_lost_answer_keeps_the_seats_until_settled(
    desk: Desk, payments: ScriptedPayments
) -> None:
    await _ready(desk)
    payments.script.append(PaymentUnreachable)
    result = await checkout.checkout(desk, ROY, "key-00000001", CARD)
    assert result.outcome == "pending" and result.cart.status == "paying"
    with pytest.raises(Refused) as caught:
        await holds.remove_item(desk, ROY, "a78-w1", "K0")
    assert caught.value.code == "cart_locked"
    assert await settlement.settle_due(desk) == 0  # the lock has not run out yet
    clock_of(desk).ms += 30_000
    assert await settlement.settle_due(desk) == 1
    cart = await settlement.get_cart(desk, ROY)
    assert cart.status == "paid" and len(payments.charges) == 1
    assert await _count(desk.engine, registrations) == 2


async def test_a_charge_that_never_arrived_unlocks_the_cart(
    desk: Desk, payments: ScriptedPayments
) -> None:
    await _ready(desk)
    payments.script.append(PaymentUnreachable)
    await checkout.checkout(desk, ROY, "key-00000001", CARD)
    payments.charged.clear()  # the adapter never saw it
    clock_of(desk).ms += 30_000
    cart = await settlement.get_cart(desk, ROY)
    assert cart.status == "open" and len(cart.items) == 2
    assert await _count(desk.engine, registrations) == 0


async def test_deferred_payment_confirms_without_charging(
    ledger_engine: AsyncEngine, payments: ScriptedPayments
) -> None:
    await load_catalogue(ledger_engine, deferred=True)
    await add_families(ledger_engine, 1)
    desk = make_desk(ledger_engine, payments)
    await family_rules.identify(desk, ROY, "900000", "418 555-0000")
    await holds.add_items(desk, ROY, "K0", ["a78-w1"])
    await _ready(desk)
    result = await checkout.checkout(desk, ROY, "key-00000001", CARD)
    assert result.outcome == "confirmed" and result.receipt is not None
    assert result.receipt.amount_due_cents == 12_500 and result.receipt.paid_cents == 0
    assert payments.charges == [] and payments.script == deque()


def test_the_confirmation_reminds_the_health_form_for_day_camps_only() -> None:
    """Lévis: "À la suite de votre inscription, complétez rapidement la fiche santé de
    votre enfant" - in the confirmation email (French, then English), for day camps; a
    receipt of courses only does not carry it."""
    from datetime import date

    from cart_service.mail import Confirmation
    from cart_service.model import ActivityInfo, Line, Receipt

    def receipt(kind: str) -> Receipt:
        activity = ActivityInfo(
            id="w1", kind=kind, title="Semaine 1", park="Parc A", age_group="7-8 ans",
            starts_on=date(2027, 6, 28), ends_on=date(2027, 7, 2), price_cents=12_500,
            capacity=10, places_left=3, min_age=7, max_age=8, class_min=None, class_max=None,
            childcare=kind == "day_camp", waiting=0,
        )  # fmt: skip
        return Receipt(
            cart_number="12345678", owner_number="ABCDEFGH", event_id="e", payer_name="Anne Roy",
            payer_email="anne@example.org", issued_at_ms=1_800_000_000_000,
            lines=[Line(activity, "m1", "Léa Roy", 12_500)], total_cents=12_500,
            paid_cents=12_500, amount_due_cents=0, currency="CAD", timezone="America/Toronto",
            card_brand="visa", card_last4="4242", payment_status="paid",
        )  # fmt: skip

    camp = Confirmation(receipt("day_camp")).body()
    assert "complétez rapidement la fiche santé" in camp and "fill in the health form" in camp
    course = Confirmation(receipt("course")).body()
    assert "fiche santé" not in course and "health form" not in course
