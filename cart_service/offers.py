"""Waiting lists that call back (Québec FAQ 6: "on vous avisera si une place se libère").

A seat frees when a hold runs out, an item is removed, a registration is cancelled or a
capacity grows. Whatever freed it, the cart service's periodic pass (``call_back``)
finds activities with a free seat and a waiting list, and offers each free seat to the
next family in line: the entry becomes an offer, which holds the seat (``seats``) until
it expires, and the family gets an email with a link. Opening the link (``claim``) puts
the seat in a cart of the family's own, held as any other, and opens the registration
on it. An offer not taken in time lapses and the seat goes to the next family.

Newcomers do not jump the line: while families wait, an activity has a seat for a
newcomer only beyond those owed to them (``seats.Candidate.full``).

Each pass is one transaction that locks the activities it offers seats of (PostgreSQL:
``FOR NO KEY UPDATE``; SQLite: the writer lock) and counts again under the lock, so
several cart replicas never offer one seat twice, and each offer is emailed once (the
email is written in the same transaction, to the outbox).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.desk import Desk, cart_for_update
from cart_service.ledger import (
    activities,
    cart_items,
    carts,
    families,
    members,
    offers,
    waiting_list,
)
from cart_service.mail import queue_email, render
from cart_service.seats import lock_activities, taken_column
from cart_service.snapshots import event_row
from waitroom.db import reading, writing
from waitroom.schedule import iso_at
from waitroom.validation import NotFound, Refused

OFFER_PREFIX = "offer-"  # an offer's session: "<event>/offer-<id>"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def call_back(
    engine: AsyncEngine, now: int, offer_ms: int, mail_from: str, public_url: str
) -> int:
    """One pass: lapse the offers whose time ran out, then offer every free seat of an
    activity with a waiting list to the next family in line. Returns offers made.

    Most passes find nothing to do: that is found out by reading, so an idle pass takes
    no write lock (on SQLite one writer excludes every other, a payment's included)."""
    if not await _anything_to_do(engine, now):
        return 0
    async with writing(engine) as conn:
        await conn.execute(
            update(offers)
            .where(offers.c.status == "open", offers.c.expires_at_ms <= now)
            .values(status="lapsed")
        )
        waited = (
            await conn.execute(
                select(activities.c.event_id, activities.c.id)
                .where(activities.c.id.in_(select(waiting_list.c.activity_id).distinct()))
                .order_by(activities.c.event_id, activities.c.id)
            )
        ).all()
        made = 0
        for event_id in sorted({row.event_id for row in waited}):
            ids = [row.id for row in waited if row.event_id == event_id]
            await lock_activities(conn, event_id, ids)
            counted = await conn.execute(
                select(activities, taken_column(now)).where(activities.c.id.in_(ids))
            )
            for act in counted.all():
                free = act.capacity - int(act.taken)
                if free > 0:
                    made += await _offer(conn, act, free, now, offer_ms, mail_from, public_url)
    return made


async def _anything_to_do(engine: AsyncEngine, now: int) -> bool:
    """An offer to lapse, or a free seat in an activity with a waiting list."""
    async with reading(engine) as conn:
        lapsing = await conn.execute(
            select(offers.c.id)
            .where(offers.c.status == "open", offers.c.expires_at_ms <= now)
            .limit(1)
        )
        if lapsing.first() is not None:
            return True
        waited = await conn.execute(
            select(activities.c.capacity, taken_column(now)).where(
                activities.c.id.in_(select(waiting_list.c.activity_id).distinct())
            )
        )
        return any(row.capacity > int(row.taken) for row in waited.all())


async def _offer(
    conn: AsyncConnection,
    act: Any,
    free: int,
    now: int,
    offer_ms: int,
    mail_from: str,
    public_url: str,
) -> int:
    """Offer ``free`` seats of ``act`` to the first families on its list."""
    entries = (
        await conn.execute(
            select(
                waiting_list,
                members.c.first_name,
                members.c.last_name,
                families.c.email,
            )
            .join(members, members.c.id == waiting_list.c.participant)
            .join(families, families.c.client_number == waiting_list.c.client_number)
            .where(waiting_list.c.activity_id == act.id)
            .order_by(waiting_list.c.id)
            .limit(free)
        )
    ).all()
    timezone = (await event_row(conn, act.event_id)).timezone
    for entry in entries:
        token = secrets.token_urlsafe(24)
        expires = now + offer_ms
        await conn.execute(
            insert(offers).values(
                event_id=act.event_id,
                activity_id=act.id,
                participant=entry.participant,
                client_number=entry.client_number,
                joined_at_ms=entry.joined_at_ms,
                token_hash=token_hash(token),
                offered_at_ms=now,
                expires_at_ms=expires,
                status="open",
            )
        )
        await conn.execute(delete(waiting_list).where(waiting_list.c.id == entry.id))
        if entry.email:
            body = render(
                "place_offered.txt.j2",
                participant=f"{entry.first_name} {entry.last_name}",
                activity=act,
                link=f"{public_url}/register/{act.event_id}/#offer={token}",
                until=iso_at(expires, timezone),
            )
            subject = f"Une place vous est offerte / A place is offered to you — {act.title}"
            await queue_email(conn, None, entry.email, subject, body, now)
    return len(entries)


@dataclass(frozen=True, slots=True)
class Claimed:
    """An offer opened: the session it is held in (its cart), for the gateway to admit."""

    event_id: str
    ticket_id: str
    client_number: str
    activity_id: str
    participant: str
    expires_at_ms: int


async def claim(desk: Desk, event_id: str, token: str) -> Claimed:
    """Open an offer from its link: its seat moves into a cart of the family's own
    (``<event>/offer-<id>``), held until the offer's end or a hold's length from now,
    whichever is later. Again (the link opened twice): the same cart. Refused
    ``offer_lapsed`` when its time ran out, NotFound ``unknown_offer``."""
    now = desk.clock_ms()
    async with writing(desk.engine) as conn:
        offer = (
            await conn.execute(
                select(offers)
                .where(offers.c.event_id == event_id, offers.c.token_hash == token_hash(token))
                .with_for_update()
            )
        ).one_or_none()
        if offer is None:
            raise NotFound("unknown_offer", "token")
        cart_id = f"{event_id}/{OFFER_PREFIX}{offer.id}"
        if offer.status == "lapsed" or (offer.status == "open" and offer.expires_at_ms <= now):
            raise Refused("offer_lapsed")
        if offer.status == "open":
            await _hold_for(desk, conn, offer, cart_id, now)
        else:
            cart = await cart_for_update(conn, cart_id)
            if cart is None or cart.status not in ("open", "paying"):
                raise Refused("offer_taken")  # paid, or its session ended
        return Claimed(
            event_id,
            f"{OFFER_PREFIX}{offer.id}",
            offer.client_number,
            offer.activity_id,
            offer.participant,
            offer.expires_at_ms,
        )


async def _hold_for(desk: Desk, conn: AsyncConnection, offer: Any, cart_id: str, now: int) -> None:
    """The offer's seat, held in the family's own new cart (in one transaction: the seat
    is never free in between)."""
    price = (
        await conn.execute(
            select(activities.c.price_cents).where(activities.c.id == offer.activity_id)
        )
    ).scalar_one()
    await conn.execute(
        insert(carts).values(
            id=cart_id,
            event_id=offer.event_id,
            client_number=offer.client_number,
            status="open",
            hold_expires_at_ms=max(offer.expires_at_ms, now + desk.hold_ms),
            extension_used=False,
            created_at_ms=now,
        )
    )
    await conn.execute(
        insert(cart_items).values(
            cart_id=cart_id,
            activity_id=offer.activity_id,
            participant=offer.participant,
            price_cents=price,
        )
    )
    await conn.execute(
        update(offers).where(offers.c.id == offer.id).values(status="taken", cart_id=cart_id)
    )
