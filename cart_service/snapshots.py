"""Carts and receipts as a parent sees them, read from the ledger.

A snapshot is computed from the rows at the instant asked: an open cart whose hold ran
out shows ``expired`` with its items under ``released``, without anything having swept
it. Receipts are reprinted from their two numbers (Québec FAQ 14).
"""

from __future__ import annotations

import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Row, bindparam, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service import families as family_records
from cart_service.ledger import (
    activities,
    bookings,
    cart_items,
    carts,
    members,
    offers,
    registration_events,
    registrations,
    waiting_list,
)
from cart_service.model import CartSnapshot, Line, Payer, Receipt, Session, WaitingPlace
from cart_service.phases import next_opening, phases_of, priority_family
from cart_service.seats import info_of, taken_column, waiting_column
from waitroom.db import reading
from waitroom.validation import FieldError, NotFound

_OWNER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off paper


# Registration events change seldom (title, currency, time zone, deferred payment) and
# are read by every call: each process keeps them this long.
EVENT_CACHE_MS = 5_000
_events: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, Row[Any]]]] = (
    weakref.WeakKeyDictionary()
)


async def event_row(conn: AsyncConnection, event_id: str) -> Row[Any]:
    """The registration event's row (read at most every ``EVENT_CACHE_MS`` per process);
    NotFound ``unknown_event``."""
    cache = _events.setdefault(conn.sync_engine, {})
    now = time.monotonic()
    cached = cache.get(event_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    event = (
        await conn.execute(select(registration_events).where(registration_events.c.id == event_id))
    ).one_or_none()
    if event is None:
        raise NotFound("unknown_event")
    cache[event_id] = (now + EVENT_CACHE_MS / 1000, event)
    return event


_CART = select(carts).where(carts.c.id == bindparam("cart_id"))


async def cart_row(conn: AsyncConnection, cart_id: str) -> Row[Any] | None:
    return (await conn.execute(_CART, {"cart_id": cart_id})).one_or_none()


def _lines_query(table: Any) -> Any:
    decided = (
        [table.c.status.label("booking_status"), table.c.reason.label("booking_reason")]
        if "status" in table.c
        else []
    )
    return (
        select(
            table.c.participant,
            table.c.price_cents.label("line_price_cents"),
            members.c.first_name,
            members.c.last_name,
            activities,
            taken_column(bindparam("now")),
            waiting_column(),
            *decided,
        )
        .select_from(
            table.join(activities, activities.c.id == table.c.activity_id).outerjoin(
                members, members.c.id == table.c.participant
            )
        )
        .where(table.c.cart_id == bindparam("cart_id"))
        .order_by(table.c.id)
    )


# Built once (every cart call reads its lines): held items, registrations, bookings.
_LINES = {
    cart_items.name: _lines_query(cart_items),
    registrations.name: _lines_query(registrations),
    bookings.name: _lines_query(bookings),
}
# Where a cart's lines are once it is past paying: registrations, or an order's bookings.
ORDERED = ("ordered", "allocated")
DONE = ("paid", "confirmed", *ORDERED)


async def lines_of(conn: AsyncConnection, cart_id: str, table: Any, now: int) -> list[Line]:
    """The lines of a cart from ``cart_items`` (held), ``registrations`` (confirmed) or
    ``bookings`` (ordered), with their activities' places left, in one query."""
    rows = await conn.execute(_LINES[table.name], {"cart_id": cart_id, "now": now})
    return [
        Line(
            info_of(row),
            row.participant,
            f"{row.first_name} {row.last_name}" if row.first_name is not None else "",
            row.line_price_cents,
            row._mapping.get("booking_status") or "",
            row._mapping.get("booking_reason") or "",
        )
        for row in rows.all()
    ]


def lines_table(cart: Row[Any]) -> Any:
    """The table a cart's lines are in, as its status says."""
    if cart.status in ORDERED:
        return bookings
    return registrations if cart.status in DONE else cart_items


async def live_items(conn: AsyncConnection, cart: Row[Any], now: int) -> list[Line]:
    """The items that still hold seats (none once an open cart's hold ran out)."""
    if cart.status == "open" and cart.hold_expires_at_ms <= now:
        return []
    return await lines_of(conn, cart.id, cart_items, now)


async def payer_of(
    conn: AsyncConnection, cart: Row[Any], family: Sequence[family_records.Member] = ()
) -> Payer | None:
    """The cart's payer, found among ``family`` when given (no query), else read."""
    if cart.payer_member is None:
        return None
    person = next((m for m in family if m.id == cart.payer_member), None)
    if person is None:
        row = (
            await conn.execute(family_records.MEMBER, {"member_id": cart.payer_member})
        ).one_or_none()
        if row is None:
            return None
        person = family_records.member_of(row)
    return Payer(person.id, f"{person.first_name} {person.last_name}", cart.payer_email or "")


async def snapshot(conn: AsyncConnection, session: Session, now: int) -> CartSnapshot:
    """The session's cart as of ``now`` (an empty open cart when it has none yet)."""
    event = await event_row(conn, session.event_id)
    cart = await cart_row(conn, session.cart_id)
    if cart is None:
        return CartSnapshot(
            event.id, "open", 0, False, [], [], "", [], None, False, 0,
            event.currency, event.timezone, 0, "",
            bool(event.payment_deferred) or event.mode == "requests",
        )  # fmt: skip
    status, released = cart.status, []
    if cart.status in DONE:
        items = await lines_of(conn, cart.id, lines_table(cart), now)
    else:
        items = await lines_of(conn, cart.id, cart_items, now)
        if cart.status == "open" and 0 < cart.hold_expires_at_ms <= now:
            status, items, released = "expired", [], items
    people, family_validated = (
        ([], True)
        if cart.client_number is None
        else await family_records.members_and_validated(conn, cart.client_number)
    )
    return CartSnapshot(
        event_id=event.id,
        status=status,
        hold_expires_at_ms=cart.hold_expires_at_ms if items and status == "open" else 0,
        extension_used=bool(cart.extension_used),
        items=items,
        released=released,
        client_number=cart.client_number or "",
        members=people,
        payer=await payer_of(conn, cart, people),
        conditions_accepted=cart.conditions_accepted_at_ms is not None,
        total_cents=sum(line.price_cents for line in items),
        currency=event.currency,
        timezone=event.timezone,
        locked_until_ms=(cart.locked_until_ms or 0) if status == "paying" else 0,
        cart_number=cart.cart_number or "",
        payment_deferred=bool(event.payment_deferred) or event.mode == "requests",
        family_validated=family_validated,
        waiting=(
            []
            if cart.client_number is None
            else await waiting_places(conn, event.id, cart.client_number, now)
        ),
        one_child_per_order=bool(event.one_child_per_order),
        takes_requests=event.mode == "requests",
        phase_opens_at_ms=(
            await _phase_wait(conn, event.id, cart.client_number, now)
            if event.mode == "requests" and cart.client_number
            else None
        ),
    )


async def _phase_wait(
    conn: AsyncConnection, event_id: str, client_number: str, now: int
) -> int | None:
    """When the family's next phase opens, if none is open for it now (0: none to come)."""
    found = await phases_of(conn, event_id)
    if not found:
        return None
    return next_opening(found, await priority_family(conn, client_number), now)


def _waiting_places_query() -> Any:
    """The family's offers that still run (place 0, with their end), then its waiting-list
    entries with their places: one statement, built once (every cart answer reads it)."""
    ahead = waiting_list.alias("ahead")
    position = (
        select(func.count())
        .select_from(ahead)
        .where(ahead.c.activity_id == waiting_list.c.activity_id, ahead.c.id <= waiting_list.c.id)
        .correlate(waiting_list)
        .scalar_subquery()
    )
    offered = (
        select(
            literal(0).label("grp"), activities.c.starts_on, offers.c.id.label("seq"),
            offers.c.activity_id, activities.c.title, offers.c.participant,
            members.c.first_name, members.c.last_name, literal(0).label("position"),
            offers.c.expires_at_ms.label("until"),
        )
        .join(activities, activities.c.id == offers.c.activity_id)
        .join(members, members.c.id == offers.c.participant)
        .where(
            offers.c.event_id == bindparam("event_id"),
            offers.c.client_number == bindparam("client_number"),
            offers.c.status == "open",
            offers.c.expires_at_ms > bindparam("now"),
        )
    )  # fmt: skip
    entries = (
        select(
            literal(1).label("grp"), activities.c.starts_on, waiting_list.c.id.label("seq"),
            waiting_list.c.activity_id, activities.c.title, waiting_list.c.participant,
            members.c.first_name, members.c.last_name, position.label("position"),
            literal(0).label("until"),
        )
        .join(activities, activities.c.id == waiting_list.c.activity_id)
        .join(members, members.c.id == waiting_list.c.participant)
        .where(
            waiting_list.c.client_number == bindparam("client_number"),
            activities.c.event_id == bindparam("event_id"),
        )
    )  # fmt: skip
    both = union_all(offered, entries).subquery()
    return select(both).order_by(both.c.grp, both.c.starts_on, both.c.seq)


_WAITING_PLACES = _waiting_places_query()


async def waiting_places(
    conn: AsyncConnection, event_id: str, client_number: str, now: int
) -> list[WaitingPlace]:
    """The family's entries on this event's waiting lists, each with its place in line,
    after the seats offered to it that still run (place 0, with the offer's end)."""
    params = {"event_id": event_id, "client_number": client_number, "now": now}
    return [
        WaitingPlace(
            r.activity_id, r.title, r.participant, f"{r.first_name} {r.last_name}",
            int(r.position), int(r.until),
        )
        for r in (await conn.execute(_WAITING_PLACES, params)).all()
    ]  # fmt: skip


async def read_snapshot(engine: AsyncEngine, session: Session, now: int) -> CartSnapshot:
    """The cart as committed, read without the write lock (writers keep it short)."""
    async with reading(engine) as conn:
        return await snapshot(conn, session, now)


async def receipt_of(conn: AsyncConnection, cart: Row[Any]) -> Receipt:
    """The receipt of a paid or confirmed cart, or of an order (its bookings)."""
    event = await event_row(conn, cart.event_id)
    lines = await lines_of(conn, cart.id, lines_table(cart), cart.settled_at_ms or 0)
    payer = await payer_of(conn, cart)
    return Receipt(
        cart_number=cart.cart_number or "",
        owner_number=cart.owner_number or "",
        event_id=cart.event_id,
        payer_name=payer.name if payer else "",
        payer_email=payer.email if payer else "",
        issued_at_ms=cart.settled_at_ms or 0,
        lines=lines,
        total_cents=int(cart.total_cents or 0),
        paid_cents=int(cart.paid_cents or 0),
        amount_due_cents=int(cart.amount_due_cents or 0),
        currency=event.currency,
        timezone=event.timezone,
        card_brand=cart.card_brand or "",
        card_last4=cart.card_last4 or "",
        payment_status=_payment_status(cart.status),
    )


def _payment_status(cart_status: str) -> str:
    if cart_status == "paid" or cart_status in ORDERED:
        return cart_status
    return "deferred"


async def reprint(engine: AsyncEngine, cart_number: str, owner_number: str) -> Receipt:
    """Reprint a receipt from its two numbers (Québec FAQ 14)."""
    cart_number, owner_number = cart_number.strip(), owner_number.strip().upper()
    if not cart_number.isdigit() or len(cart_number) != 8:
        raise FieldError("invalid_cart_number", "cart_number")
    if not owner_number.isalnum() or len(owner_number) != 8:
        raise FieldError("invalid_owner_number", "owner_number")
    async with reading(engine) as conn:
        cart = (
            await conn.execute(select(carts).where(carts.c.cart_number == cart_number))
        ).one_or_none()
        if cart is None or not secrets.compare_digest(
            (cart.owner_number or "").encode(), owner_number.encode()
        ):
            raise NotFound("receipt_not_found")
        return await receipt_of(conn, cart)


async def unused(conn: AsyncConnection, column: Any, draw: Callable[[], str]) -> str:
    """A value from ``draw()`` that ``column`` does not hold yet (drawn again if it does)."""
    while True:
        value = draw()
        used = (await conn.execute(select(func.count()).where(column == value))).scalar_one()
        if not used:
            return value


async def new_cart_number(conn: AsyncConnection) -> str:
    """An unused 8-digit cart number (shown on the receipt and on a locked cart)."""
    return await unused(
        conn, carts.c.cart_number, lambda: f"{secrets.randbelow(90_000_000) + 10_000_000}"
    )


def new_owner_number() -> str:
    """Eight characters that prove ownership of a receipt (never guessable)."""
    return "".join(secrets.choice(_OWNER_ALPHABET) for _ in range(8))
