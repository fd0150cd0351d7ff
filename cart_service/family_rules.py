"""The family in the cart: who is identified, who may take part, who may pay.

Identification is by client number and principal phone (Lévis step 3); a new member can
be added and takes part at once; the payer is one of the family's adults, never a child,
and the family's responsible person when the cart holds childcare, because that person
receives the Relevé 24 (Québec FAQ 12-13).
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cart_service import families as family_records
from cart_service.desk import (
    Desk,
    adopt_earlier_carts,
    changing,
    day_of,
    open_cart,
    touch,
    update_cart,
)
from cart_service.ledger import members
from cart_service.model import CartSnapshot, Session
from cart_service.snapshots import live_items, unused
from waitroom.validation import FieldError, Refused

RELATIONSHIPS = ("responsible", "spouse", "parent", "other", "child")
# Who a parent may add online (Québec FAQ 4: the rest of the record goes through the
# office): a child, or another adult who is never the payer of childcare. Never a second
# "responsible" (the Relevé 24 goes to the responsible person).
ONLINE_RELATIONSHIPS = ("child", "other")
ADULT_AGE = 18


async def identify(desk: Desk, session: Session, client_number: str, phone: str) -> CartSnapshot:
    """Identify the family (client number + principal phone) whose members take part."""
    family = await family_records.identify(desk.engine, client_number, phone)
    if session.family and family.client_number != session.family:
        # Its draw entry was this other family's: one chance per family, not per ticket.
        raise Refused("family_mismatch", "client_number")
    async with changing(desk, session) as change:
        conn = change.conn
        cart = await open_cart(desk, conn, session)
        live = await live_items(conn, cart, desk.clock_ms())
        if cart.client_number not in (None, family.client_number) and live:
            raise Refused("other_family_in_cart", "client_number")
        await update_cart(conn, cart.id, client_number=family.client_number)
        await adopt_earlier_carts(desk, conn, cart, family.client_number)
    return change.cart


async def add_member(
    desk: Desk,
    session: Session,
    *,
    first_name: str,
    last_name: str,
    birth_date: str,
    relationship: str,
    class_level: int | None,
) -> CartSnapshot:
    """Add a person to the identified family; they can take part at once."""
    first, last = first_name.strip(), last_name.strip()
    if not 1 <= len(first) <= 100:
        raise FieldError("required", "first_name")
    if not 1 <= len(last) <= 100:
        raise FieldError("required", "last_name")
    born = _parse_date(birth_date, "birth_date")
    today = day_of(desk.clock_ms())
    if born > today or born.year < today.year - 120:
        raise FieldError("invalid_date", "birth_date")
    if relationship not in RELATIONSHIPS:
        raise FieldError("invalid_relationship", "relationship")
    if relationship not in ONLINE_RELATIONSHIPS:
        raise FieldError("relationship_needs_office", "relationship")
    if class_level is not None and not 0 <= class_level <= 12:
        raise FieldError("invalid_class_level", "class_level")
    async with changing(desk, session) as change:
        conn = change.conn
        cart = await open_cart(desk, conn, session)
        if cart.client_number is None:
            raise Refused("family_not_identified", "client_number")
        await conn.execute(
            insert(members).values(
                id=await unused(conn, members.c.id, _new_member_id),
                client_number=cart.client_number,
                first_name=first,
                last_name=last,
                birth_date=born,
                relationship=relationship,
                class_level=class_level,
                pending_validation=True,  # the office validates what a family adds online
            )
        )
        await touch(desk, conn, cart)
    return change.cart


async def set_payer(
    desk: Desk, session: Session, member_id: str, client_number: str, phone: str, email: str
) -> CartSnapshot:
    """Confirm the payer (Lévis step 4): one of the identified family's adults; the
    family's responsible person when the cart holds childcare (Relevé 24)."""
    address = family_records.normalize_email(email)
    family = await family_records.identify(desk.engine, client_number, phone)
    async with changing(desk, session) as change:
        conn = change.conn
        cart = await open_cart(desk, conn, session)
        if cart.client_number is None:
            raise Refused("family_not_identified", "client_number")
        if family.client_number != cart.client_number:
            raise Refused("payer_other_family", "client_number")
        payer = family.member(member_id.strip())
        if payer is None:
            raise FieldError("unknown_member", "member")
        await check_payer(conn, cart, payer, desk.clock_ms())
        await update_cart(conn, cart.id, payer_member=payer.id, payer_email=address)
        await touch(desk, conn, cart)
    return change.cart


async def check_payer(
    conn: AsyncConnection, cart: Row[Any], payer: family_records.Member, now: int
) -> None:
    """FAQ 12-13: never a child; the responsible person for childcare (Relevé 24)."""
    if payer.relationship == "child":
        raise Refused("payer_is_child", "member")
    if payer.age_on(day_of(now)) < ADULT_AGE:
        raise Refused("payer_too_young", "member")
    lines = await live_items(conn, cart, now)
    if any(line.activity.childcare for line in lines) and payer.relationship != "responsible":
        raise Refused("payer_must_be_responsible", "member")


_MEMBER_OF_FAMILY = select(members).where(
    members.c.id == bindparam("member_id"), members.c.client_number == bindparam("client_number")
)


async def booking_member(
    conn: AsyncConnection, cart: Row[Any], member_id: str, field_name: str
) -> family_records.Member:
    """A member of the cart's family, for a booking (a seat, a waiting list): refused
    ``account_not_validated`` while the team has not validated the family's account
    (P'tit Victor: "seuls les comptes validés peuvent procéder aux réservations")."""
    member = await family_member(conn, cart, member_id, field_name)
    if not await family_records.validated(conn, cart.client_number):
        raise Refused("account_not_validated", "client_number")
    return member


async def family_member(
    conn: AsyncConnection, cart: Row[Any], member_id: str, field_name: str
) -> family_records.Member:
    """A member of the cart's identified family; FieldError ``unknown_member`` otherwise."""
    if cart.client_number is None:
        raise Refused("family_not_identified", "client_number")
    params = {"member_id": member_id.strip(), "client_number": cart.client_number}
    row = (await conn.execute(_MEMBER_OF_FAMILY, params)).one_or_none()
    if row is None:
        raise FieldError("unknown_member", field_name)
    return family_records.member_of(row)


def _new_member_id() -> str:
    return f"P{secrets.randbelow(9_000_000) + 1_000_000}"


def _parse_date(text: str, field_name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise FieldError("invalid_date", field_name) from None
