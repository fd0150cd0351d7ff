"""P'tit Victor's "requests" events: orders "En attente".

In such an event a family orders instead of buying: checkout records the cart's lines as
bookings, pending (the order's "En attente"), and holds no seat. The allocation
(``allocation``) later makes each booking reserved or cancelled.

A family orders in the first open phase (``phases``) it is eligible for; the phase's
rank is the booking's priority in the allocation, the moment of the order its place in
line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cart_service import families as family_records
from cart_service.desk import Desk
from cart_service.ledger import (
    bookings,
    cart_items,
    carts,
    members,
    registrations,
)
from cart_service.mail import Confirmation, queue_confirmation
from cart_service.model import Receipt
from cart_service.phases import phases_of, priority_family
from cart_service.snapshots import (
    cart_row,
    event_row,
    new_cart_number,
    new_owner_number,
    receipt_of,
)
from waitroom.schedule import iso_at
from waitroom.validation import Refused

OPEN = ("pending", "reserved")  # a booking that stands (a cancelled one may be ordered again)


async def ordering_phase(
    conn: AsyncConnection,
    event_id: str,
    client_number: str,
    member: family_records.Member,
    now_ms: int,
) -> int:
    """The rank of the open phase this child orders in (0 when the event has no phases).
    Refused ``not_your_phase`` when none is open for them, with when theirs opens (in
    the event's time zone), ``no_phase_left`` when none to come is for them."""
    found = await phases_of(conn, event_id)
    if not found:
        return 0
    priority = await priority_family(conn, client_number)
    theirs = [p for p in found if p.admits(priority, member.class_level)]
    current = next((p for p in theirs if p.open_at(now_ms)), None)
    if current is not None:
        return current.rank
    later = [p.opens_at_ms for p in theirs if p.opens_at_ms > now_ms]
    if not later:
        raise Refused("no_phase_left", "participant")
    timezone = (await event_row(conn, event_id)).timezone
    raise Refused("not_your_phase", "participant", detail=iso_at(min(later), timezone))


async def standing_bookings(
    conn: AsyncConnection, participant: str, activity_ids: Sequence[str]
) -> set[str]:
    """The activities among ``activity_ids`` where ``participant`` has a booking that
    stands (pending or reserved): ordering it again is a duplicate."""
    rows = await conn.execute(
        select(bookings.c.activity_id).where(
            bookings.c.participant == participant,
            bookings.c.activity_id.in_(list(activity_ids)),
            bookings.c.status.in_(OPEN),
        )
    )
    return set(rows.scalars())


async def reserved_counts(conn: AsyncConnection, activity_ids: Sequence[str]) -> dict[str, int]:
    """Places given (registrations) in each of ``activity_ids``."""
    rows = await conn.execute(
        select(registrations.c.activity_id, func.count())
        .where(registrations.c.activity_id.in_(list(activity_ids)))
        .group_by(registrations.c.activity_id)
    )
    return {activity: int(count) for activity, count in rows.all()}


async def place_order(
    desk: Desk, conn: AsyncConnection, cart: Row[Any], key: str, total: int, now: int
) -> Receipt:
    """The cart's lines become pending bookings, the cart an order "En attente" with its
    numbers, and the family is told by email: one transaction. Nothing is charged: the
    allocation says what is owed."""
    items = (await conn.execute(select(cart_items).where(cart_items.c.cart_id == cart.id))).all()
    people = {
        row.id: family_records.member_of(row)
        for row in await conn.execute(
            select(members).where(members.c.id.in_({item.participant for item in items}))
        )
    }
    rows = []
    for item in items:
        # Checked again now: the phase may have closed since the child was added.
        rank = await ordering_phase(
            conn, cart.event_id, cart.client_number, people[item.participant], now
        )
        rows.append(
            {
                "event_id": cart.event_id,
                "cart_id": cart.id,
                "activity_id": item.activity_id,
                "participant": item.participant,
                "client_number": cart.client_number,
                "price_cents": item.price_cents,
                "phase_rank": rank,
                "ordered_at_ms": now,
                "status": "pending",
            }
        )
    await conn.execute(insert(bookings), rows)
    await conn.execute(delete(cart_items).where(cart_items.c.cart_id == cart.id))
    await conn.execute(
        update(carts)
        .where(carts.c.id == cart.id)
        .values(
            status="ordered",
            payment_key=key,
            locked_until_ms=None,
            cart_number=cart.cart_number or await new_cart_number(conn),
            owner_number=new_owner_number(),
            total_cents=total,
            paid_cents=0,
            amount_due_cents=0,
            settled_at_ms=now,
        )
    )
    ordered = await cart_row(conn, cart.id)
    assert ordered is not None
    receipt = await receipt_of(conn, ordered)
    await queue_confirmation(conn, cart.id, Confirmation(receipt), desk.mail_from, now)
    return receipt
