"""Checkout (Lévis steps 4-5, Québec FAQ 9-11): conditions, then one charge per key.

The cart is locked for the payment (its seats stay held) before the payment adapter is
asked; what the answer does to the cart is ``settlement``'s. A double submit under the
same key finds the first payment; a mistyped card never reaches the provider and leaves
the cart as it was.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from cart_service import families as family_records
from cart_service.desk import Desk, cart_for_update, changing, open_cart, touch, update_cart
from cart_service.family_rules import check_payer
from cart_service.model import CartSnapshot, CheckoutResult, Line, Receipt, Session
from cart_service.orders import place_order
from cart_service.payment_port import CardInput, PaymentResult, PaymentUnreachable
from cart_service.settlement import apply_payment, confirm, unlock
from cart_service.snapshots import (
    DONE,
    ORDERED,
    event_row,
    live_items,
    new_cart_number,
    receipt_of,
    snapshot,
)
from waitroom.db import writing
from waitroom.metrics import CHECKOUTS
from waitroom.validation import FieldError, Refused


async def accept_conditions(desk: Desk, session: Session, accepted: bool) -> CartSnapshot:
    """Step 5: nothing proceeds to payment without it."""
    if not accepted:
        raise FieldError("must_accept", "accepted")
    async with changing(desk, session) as change:
        conn = change.conn
        cart = await open_cart(desk, conn, session)
        await update_cart(conn, cart.id, conditions_accepted_at_ms=desk.clock_ms())
        await touch(desk, conn, cart)
    return change.cart


async def checkout(desk: Desk, session: Session, key: str, card: CardInput) -> CheckoutResult:
    """Lock the cart, charge once per ``key``, then confirm or unlock.

    A declined card leaves the cart as it was (its hold restarted). A provider that
    does not answer in time leaves the cart locked until ``settle`` learns the outcome:
    never a double charge, never a paid cart without its registrations.
    """
    key = key.strip()
    if not 8 <= len(key) <= 100:
        raise FieldError("invalid_idempotency_key", "idempotency_key")
    now = desk.clock_ms()
    async with writing(desk.engine) as conn:
        cart = await cart_for_update(conn, session.cart_id)
        if cart is not None and cart.payment_key == key and cart.status in DONE:
            done = await receipt_of(conn, cart)  # a double submit after success
            outcome = "ordered" if cart.status in ORDERED else cart.status
            return CheckoutResult(outcome, await snapshot(conn, session, now), done)
        replay = cart is not None and cart.status == "paying" and cart.payment_key == key
        event = await event_row(conn, session.event_id)
        receipt: Receipt | None = None
        if replay:
            assert cart is not None
            total = int(cart.total_cents or 0)
        else:
            cart = await open_cart(desk, conn, session)
            lines = await live_items(conn, cart, now)
            total = await _check_ready(conn, cart, lines, now)
            if event.mode == "requests":  # P'tit Victor: an order "En attente"
                receipt = await place_order(desk, conn, cart, key, total, now)
            elif event.payment_deferred:
                receipt = await confirm(desk, conn, cart, key, None, total, now)
            else:
                # The cart's number from the moment it locks (FAQ 11: a parent whose
                # locked cart does not come back calls support with its number); the
                # receipt keeps it.
                await update_cart(
                    conn,
                    cart.id,
                    status="paying",
                    payment_key=key,
                    total_cents=total,
                    locked_until_ms=now + desk.lock_ms,
                    cart_number=cart.cart_number or await new_cart_number(conn),
                )
    if receipt is not None:  # payment deferred, or an order: nothing to charge now
        outcome = "ordered" if receipt.payment_status == "ordered" else "confirmed"
        desk.on_confirmed()
        CHECKOUTS.labels(session.event_id, outcome).inc()
        return CheckoutResult(outcome, await desk.snapshot(session), receipt)
    try:
        result = await desk.payments.charge(
            key, session.cart_id, total, event.currency, card, event.title
        )
    except FieldError:
        await unlock(desk, session.cart_id, key)  # a mistyped card: nothing was sent
        raise
    except PaymentUnreachable:
        result = PaymentResult("unknown")
    return await apply_payment(desk, session, key, result)


async def _check_ready(conn: AsyncConnection, cart: Row[Any], lines: list[Line], now: int) -> int:
    """Everything checkout needs, checked again now; returns the total in cents."""
    if not lines:
        raise Refused("cart_empty")
    if cart.payer_member is None or cart.payer_email is None:
        raise Refused("payer_required", "member")
    if cart.conditions_accepted_at_ms is None:
        raise Refused("conditions_not_accepted", "accepted")
    row = (await conn.execute(family_records.MEMBER, {"member_id": cart.payer_member})).one()
    await check_payer(conn, cart, family_records.member_of(row), now)
    return sum(line.price_cents for line in lines)
