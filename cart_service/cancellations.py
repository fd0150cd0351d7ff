"""Staff cancel a registration (issue 14): its seat frees at once (the registration
moves to ``cancellations``), what was paid for it is refunded through the payment adapter
(once, under a key of its own, reconciled like a charge), and the family is emailed.

Cancelling the same registration again answers the same cancellation, and tries the
refund again while its outcome is not known; nothing is ever refunded twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cart_service.desk import Desk
from cart_service.ledger import (
    activities,
    bookings,
    cancellations,
    carts,
    members,
    registrations,
)
from cart_service.mail import queue_email, render
from cart_service.payment_port import PaymentUnreachable
from waitroom.db import writing
from waitroom.validation import FieldError, NotFound

SETTLED = ("approved", "declined")


@dataclass(frozen=True, slots=True)
class Cancellation:
    registration_id: int
    activity_id: str
    participant: str
    amount_cents: int
    refund_status: str  # approved | declined | unknown | "" (nothing was paid)


async def cancel_registration(
    desk: Desk, event_id: str, registration_id: int, reason: str, who: str
) -> Cancellation:
    if not 0 <= len(reason.strip()) <= 500:
        raise FieldError("too_long", "reason")
    moved: Row[Any] | None = None  # the registration, when this call cancelled it
    async with writing(desk.engine) as conn:
        done = await _cancelled(conn, event_id, registration_id)
        if done is None:
            done, moved = await _move(desk, conn, event_id, registration_id, reason.strip(), who)
    if done.refund_key and done.refund_status not in SETTLED:
        done = dataclasses.replace(done, refund_status=await _refund(desk, done))
    if done.refund_key or moved is not None:
        async with writing(desk.engine) as conn:
            await conn.execute(
                update(cancellations)
                .where(cancellations.c.registration_id == registration_id)
                .values(refund_status=done.refund_status)
            )
            if moved is not None and moved.payer_email:  # once, with the refund's outcome
                await _queue_email(
                    conn, moved, reason.strip(), done.refund_status or "", desk.clock_ms()
                )
    if moved is not None:  # the place freed: offered to the waiting list's next family
        desk.on_confirmed()
    return Cancellation(
        registration_id, done.activity_id, done.participant, done.price_cents,
        done.refund_status or "",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Row:
    activity_id: str
    participant: str
    price_cents: int
    refund_key: str | None
    refund_status: str | None
    payment_key: str | None


async def _cancelled(conn: AsyncConnection, event_id: str, registration_id: int) -> _Row | None:
    row = (
        await conn.execute(
            select(cancellations, carts.c.payment_key)
            .join(activities, activities.c.id == cancellations.c.activity_id)
            .join(carts, carts.c.id == cancellations.c.cart_id)
            .where(
                cancellations.c.registration_id == registration_id,
                activities.c.event_id == event_id,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return _Row(row.activity_id, row.participant, row.price_cents, row.refund_key,
                row.refund_status, row.payment_key)  # fmt: skip


async def _move(
    desk: Desk, conn: AsyncConnection, event_id: str, registration_id: int, reason: str, who: str
) -> tuple[_Row, Row[Any]]:
    found = (
        await conn.execute(
            select(
                registrations,
                carts.c.payment_key,
                carts.c.status.label("cart_status"),
                carts.c.payer_email,
                carts.c.cart_number,
            )
            .join(activities, activities.c.id == registrations.c.activity_id)
            .join(carts, carts.c.id == registrations.c.cart_id)
            .where(registrations.c.id == registration_id, activities.c.event_id == event_id)
            .with_for_update()
        )
    ).one_or_none()
    if found is None:
        raise NotFound("unknown_registration", "registration_id")
    paid = found.cart_status == "paid" and bool(found.payment_key)
    refund_key = f"refund-{event_id}-{registration_id}" if paid else None
    now = desk.clock_ms()
    await conn.execute(
        insert(cancellations).values(
            registration_id=registration_id, activity_id=found.activity_id,
            participant=found.participant, cart_id=found.cart_id,
            price_cents=found.price_cents, confirmed_at_ms=found.confirmed_at_ms,
            cancelled_at_ms=now, cancelled_by=who[:100], reason=reason,
            refund_key=refund_key, refund_status="pending" if paid else None,
        )
    )  # fmt: skip
    await conn.execute(delete(registrations).where(registrations.c.id == registration_id))
    await conn.execute(  # an order's reserved booking (a "requests" event) says so too
        update(bookings)
        .where(bookings.c.registration_id == registration_id)
        .values(status="cancelled", reason="cancelled_by_staff", decided_at_ms=now)
    )
    done = _Row(found.activity_id, found.participant, found.price_cents, refund_key,
                "pending" if paid else None, found.payment_key)  # fmt: skip
    return done, found


async def _refund(desk: Desk, done: _Row) -> str:
    assert done.refund_key is not None and done.payment_key is not None
    try:
        return await desk.payments.refund(done.refund_key, done.payment_key, done.price_cents)
    except PaymentUnreachable:
        return "unknown"  # tried again by the next cancel call of this registration


async def _queue_email(
    conn: AsyncConnection, row: Row[Any], reason: str, refund_status: str, now: int
) -> None:
    person = (await conn.execute(select(members).where(members.c.id == row.participant))).one()
    activity = (
        await conn.execute(select(activities).where(activities.c.id == row.activity_id))
    ).one()
    number = row.cart_number or ""
    body = render(
        "cancellation.txt.j2",
        participant=f"{person.first_name} {person.last_name}",
        activity=activity,
        reason=reason,
        refund_status=refund_status,
        amount_cents=row.price_cents,
        cart_number=number,
    )
    subject = f"Annulation d'inscription / Registration cancelled — {number}"
    await queue_email(conn, row.cart_id, row.payer_email, subject, body, now)
