"""Holding, counting and confirming seats: never more taken than an activity has.

Every hold runs in one transaction that first locks the activity's row (PostgreSQL
``SELECT ... FOR UPDATE``; SQLite takes its write lock at ``BEGIN IMMEDIATE``), then counts
the seats taken and inserts only if one is left. Two families can never both take the
last seat, whatever the concurrency.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.ledger import activities, cart_items, carts, registrations

HOLD_MS = 20 * 60 * 1000


class SeatError(Exception):
    """A seat cannot be held; ``code`` is the API's error code."""

    code = "seat_error"


class UnknownActivity(SeatError):
    code = "unknown_activity"


class ActivityFull(SeatError):
    """No seat left: the caller offers the waiting list instead."""

    code = "activity_full"


class AlreadyRegistered(SeatError):
    code = "already_registered"


class AlreadyInCart(SeatError):
    code = "already_in_cart"


class CartNotOpen(SeatError):
    code = "cart_not_open"


async def _capacity(conn: AsyncConnection, activity_id: str, *, lock: bool = False) -> int:
    """The activity's capacity; with ``lock``, its row stays locked until the transaction
    ends (PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the write lock)."""
    query = select(activities.c.capacity).where(activities.c.id == activity_id)
    capacity = (await conn.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    if capacity is None:
        raise UnknownActivity(activity_id)
    return int(capacity)


async def _taken(conn: AsyncConnection, activity_id: str, now_ms: int) -> int:
    confirmed = select(func.count()).where(registrations.c.activity_id == activity_id)
    held = (
        select(func.count())
        .select_from(cart_items.join(carts, carts.c.id == cart_items.c.cart_id))
        .where(
            cart_items.c.activity_id == activity_id,
            carts.c.status == "open",
            carts.c.hold_expires_at_ms > now_ms,
        )
    )
    return int((await conn.execute(confirmed)).scalar_one()) + int(
        (await conn.execute(held)).scalar_one()
    )


async def places_left(engine: AsyncEngine, activity_id: str, now_ms: int) -> int:
    """Seats neither confirmed nor held by a live cart."""
    async with engine.connect() as conn:
        capacity = await _capacity(conn, activity_id)
        return max(0, capacity - await _taken(conn, activity_id, now_ms))


async def hold_seat(
    engine: AsyncEngine,
    *,
    cart_id: str,
    family: str,
    activity_id: str,
    participant: str,
    now_ms: int,
    hold_ms: int = HOLD_MS,
) -> int:
    """Put ``participant`` in ``cart_id`` for ``activity_id``, holding a seat; returns the
    cart's new hold expiry (every change restarts the hold). A cart whose hold had
    expired lost its seats: its old items are dropped before the new one is added."""
    async with engine.begin() as conn:
        capacity = await _capacity(conn, activity_id, lock=True)
        registered = (
            await conn.execute(
                select(func.count()).where(
                    registrations.c.activity_id == activity_id,
                    registrations.c.participant == participant,
                )
            )
        ).scalar_one()
        if registered:
            raise AlreadyRegistered(participant)
        cart = (
            await conn.execute(
                select(carts.c.status, carts.c.hold_expires_at_ms).where(carts.c.id == cart_id)
            )
        ).one_or_none()
        if cart is None:
            await conn.execute(
                insert(carts).values(
                    id=cart_id, family=family, status="open", hold_expires_at_ms=now_ms
                )
            )
        elif cart.status != "open":
            raise CartNotOpen(cart_id)
        elif cart.hold_expires_at_ms <= now_ms:
            await conn.execute(delete(cart_items).where(cart_items.c.cart_id == cart_id))
        else:
            in_cart = (
                await conn.execute(
                    select(func.count()).where(
                        cart_items.c.cart_id == cart_id,
                        cart_items.c.activity_id == activity_id,
                        cart_items.c.participant == participant,
                    )
                )
            ).scalar_one()
            if in_cart:
                raise AlreadyInCart(participant)
        if await _taken(conn, activity_id, now_ms) >= capacity:
            raise ActivityFull(activity_id)
        await conn.execute(
            insert(cart_items).values(
                cart_id=cart_id, activity_id=activity_id, participant=participant
            )
        )
        expires = now_ms + hold_ms
        await conn.execute(
            update(carts).where(carts.c.id == cart_id).values(hold_expires_at_ms=expires)
        )
        return expires


async def confirm_cart(engine: AsyncEngine, cart_id: str, now_ms: int) -> int:
    """Turn a live cart's items into registrations (after payment); returns how many."""
    async with engine.begin() as conn:
        cart = (
            await conn.execute(
                select(carts.c.status, carts.c.hold_expires_at_ms)
                .where(carts.c.id == cart_id)
                .with_for_update()
            )
        ).one_or_none()
        if cart is None or cart.status != "open" or cart.hold_expires_at_ms <= now_ms:
            raise CartNotOpen(cart_id)
        items = (
            await conn.execute(
                select(cart_items.c.activity_id, cart_items.c.participant).where(
                    cart_items.c.cart_id == cart_id
                )
            )
        ).all()
        for item in items:
            await conn.execute(
                insert(registrations).values(
                    activity_id=item.activity_id,
                    participant=item.participant,
                    cart_id=cart_id,
                    confirmed_at_ms=now_ms,
                )
            )
        await conn.execute(update(carts).where(carts.c.id == cart_id).values(status="paid"))
        return len(items)
