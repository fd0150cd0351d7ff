"""Settlement: what a payment's outcome does to the cart locked for it.

Approved: the cart's items become registrations (moved, not copied), with the cart and
owner numbers and the confirmation email, in one transaction. Declined or never sent:
the cart opens again as it was, its hold restarted. Unknown (the provider did not
answer): the cart stays locked, its seats held, until ``settle`` learns the outcome from
the payment adapter; never a double charge, never a paid cart without its registrations
(Québec FAQ 11).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cart_service.desk import Desk, cart_for_update
from cart_service.ledger import cart_items, carts, registrations
from cart_service.mail import Confirmation, queue_confirmation
from cart_service.model import CartSnapshot, CheckoutResult, Receipt, Session
from cart_service.payment_port import PaymentResult, PaymentUnreachable
from cart_service.snapshots import cart_row, new_cart_number, new_owner_number, receipt_of
from waitroom.db import reading, writing
from waitroom.metrics import CHECKOUTS
from waitroom.validation import Unauthenticated


async def get_cart(desk: Desk, session: Session) -> CartSnapshot:
    """The session's cart; a payment lock past its time is settled first (FAQ 11)."""
    async with reading(desk.engine) as conn:
        cart = await cart_row(conn, session.cart_id)
    if cart is not None and cart.status == "ended":
        raise Unauthenticated("session_ended")
    if (
        cart is not None
        and cart.status == "paying"
        and (cart.locked_until_ms or 0) <= desk.clock_ms()
    ):
        await settle(desk, session.cart_id)
    return await desk.snapshot(session)


async def settle(desk: Desk, cart_id: str) -> None:
    """Settle a cart locked for payment: confirm it if the payment went through, unlock
    it if it did not, leave it locked (a while longer) if nobody knows yet."""
    async with reading(desk.engine) as conn:
        cart = await cart_row(conn, cart_id)
    if cart is None or cart.status != "paying" or cart.payment_key is None:
        return
    try:
        result = await desk.payments.lookup(cart.payment_key)
    except PaymentUnreachable:
        result = PaymentResult("unknown")
    if result is None:  # the charge never reached the adapter
        result = PaymentResult("not_sent")
    await apply_payment(desk, Session.of_cart(cart_id), cart.payment_key, result)


async def settle_due(desk: Desk) -> int:
    """Settle every cart whose payment lock has run out; returns how many were looked at."""
    now = desk.clock_ms()
    async with reading(desk.engine) as conn:
        due = (
            await conn.execute(
                select(carts.c.id).where(carts.c.status == "paying", carts.c.locked_until_ms <= now)
            )
        ).scalars()
        ids = list(due)
    for cart_id in ids:
        await settle(desk, cart_id)
    return len(ids)


async def apply_payment(
    desk: Desk, session: Session, key: str, result: PaymentResult
) -> CheckoutResult:
    """Confirm, unlock or keep locked, as the payment's outcome says; counted by outcome."""
    applied = await _apply(desk, session, key, result)
    CHECKOUTS.labels(session.event_id, applied.outcome).inc()
    return applied


async def _apply(desk: Desk, session: Session, key: str, result: PaymentResult) -> CheckoutResult:
    now = desk.clock_ms()
    if result.status == "approved":
        async with writing(desk.engine) as conn:
            cart = await cart_for_update(conn, session.cart_id)
            assert cart is not None
            if cart.status == "paying" and cart.payment_key == key:
                total = int(cart.total_cents or 0)
                receipt = await confirm(desk, conn, cart, key, result, total, now)
            else:
                receipt = await receipt_of(conn, cart)
        desk.on_confirmed()
        return CheckoutResult("paid", await desk.snapshot(session), receipt)
    if result.status in ("declined", "not_sent"):
        await unlock(desk, session.cart_id, key)
        reason = result.decline_reason or ("provider_busy" if result.status == "not_sent" else "")
        return CheckoutResult("declined", await desk.snapshot(session), decline_reason=reason)
    async with writing(desk.engine) as conn:  # unknown: locked until settled
        await conn.execute(
            update(carts)
            .where(carts.c.id == session.cart_id, carts.c.status == "paying")
            .values(locked_until_ms=now + desk.lock_ms)
        )
    return CheckoutResult("pending", await desk.snapshot(session))


async def unlock(desk: Desk, cart_id: str, key: str) -> None:
    """Back to the cart, as it was, its hold restarted (a change restarts the hold)."""
    async with writing(desk.engine) as conn:
        await conn.execute(
            update(carts)
            .where(carts.c.id == cart_id, carts.c.status == "paying", carts.c.payment_key == key)
            .values(
                status="open",
                payment_key=None,
                locked_until_ms=None,
                hold_expires_at_ms=desk.clock_ms() + desk.hold_ms,
            )
        )


async def confirm(
    desk: Desk,
    conn: AsyncConnection,
    cart: Row[Any],
    key: str,
    payment: PaymentResult | None,
    total: int,
    now: int,
) -> Receipt:
    """Registrations, cart and owner numbers, the confirmation email: one transaction.
    ``payment`` None: the event defers payment, the total is recorded as due."""
    items = (
        await conn.execute(
            select(
                cart_items.c.activity_id, cart_items.c.participant, cart_items.c.price_cents
            ).where(cart_items.c.cart_id == cart.id)
        )
    ).all()
    await conn.execute(
        insert(registrations),
        [
            {
                "activity_id": item.activity_id,
                "participant": item.participant,
                "cart_id": cart.id,
                "price_cents": item.price_cents,
                "confirmed_at_ms": now,
            }
            for item in items
        ],
    )
    # The items become the registrations: a live-seat count never scans paid carts.
    await conn.execute(delete(cart_items).where(cart_items.c.cart_id == cart.id))
    await conn.execute(
        update(carts)
        .where(carts.c.id == cart.id)
        .values(
            status="paid" if payment is not None else "confirmed",
            payment_key=key,
            locked_until_ms=None,
            cart_number=cart.cart_number or await new_cart_number(conn),
            owner_number=new_owner_number(),
            total_cents=total,
            paid_cents=total if payment is not None else 0,
            amount_due_cents=0 if payment is not None else total,
            card_brand=payment.brand if payment is not None else None,
            card_last4=payment.last4 if payment is not None else None,
            settled_at_ms=now,
        )
    )
    confirmed = await cart_row(conn, cart.id)
    assert confirmed is not None
    receipt = await receipt_of(conn, confirmed)
    await queue_confirmation(conn, cart.id, Confirmation(receipt), desk.mail_from, now)
    return receipt
