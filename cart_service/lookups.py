"""What the staff console looks up (``StaffLookup``): a family, a cart by its number, an
activity's roster and waiting list, as named tables (a header and rows of text), from
the same queries as the CSV exports (``exports``), so the console and the files agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service import exports
from cart_service.ledger import activities, carts, families, members
from waitroom.db import reading
from waitroom.schedule import iso_at
from waitroom.validation import FieldError, NotFound

Table = tuple[str, list[str], list[list[str]]]  # name, header, rows
KINDS = ("family", "cart", "activity")


def _text(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [["" if cell is None else str(cell) for cell in row] for row in rows]


def _where(header: list[str], rows: list[list[Any]], column: str, value: str) -> list[list[Any]]:
    index = header.index(column)
    return [row for row in rows if str(row[index]) == value]


async def lookup(engine: AsyncEngine, event_id: str, kind: str, key: str) -> list[Table]:
    key = key.strip()
    if kind not in KINDS:
        raise FieldError("invalid_kind", "kind")
    if not key or len(key) > 64:
        raise FieldError("required", "key")
    async with reading(engine) as conn:
        zone = await exports.zone_of(conn, event_id)  # NotFound unknown_event
        if kind == "family":
            return await _family(conn, event_id, key, zone)
        if kind == "cart":
            return await _cart(conn, event_id, key, zone)
        return await _activity(conn, event_id, key)


async def _family(conn: AsyncConnection, event_id: str, number: str, zone: str) -> list[Table]:
    family = (
        await conn.execute(select(families).where(families.c.client_number == number))
    ).one_or_none()
    if family is None:
        raise NotFound("unknown_family", "key")
    people = (
        await conn.execute(
            select(members).where(members.c.client_number == number).order_by(members.c.birth_date)
        )
    ).all()
    record = [family.client_number, family.principal_phone, family.email,
              family.validated, family.member, family.preregistered]  # fmt: skip
    persons = [
        [m.id, m.first_name, m.last_name, m.birth_date, m.relationship, m.class_level,
         m.pending_validation]
        for m in people
    ]  # fmt: skip
    header, rows = await exports.registrations_rows(conn, event_id)
    w_header, waiting = await exports.waiting_lists_rows(conn, event_id)
    return [
        ("family", FAMILY_COLUMNS, _text([record])),
        ("members", MEMBER_COLUMNS, _text(persons)),
        await _carts(conn, event_id, zone, carts.c.client_number == number),
        ("registrations", header, _text(_where(header, rows, "client_number", number))),
        ("waiting_lists", w_header, _text(_where(w_header, waiting, "client_number", number))),
    ]


FAMILY_COLUMNS = ["client_number", "principal_phone", "email", "validated", "member",
                  "preregistered"]  # fmt: skip
MEMBER_COLUMNS = ["id", "first_name", "last_name", "birth_date", "relationship",
                  "class_level", "pending_validation"]  # fmt: skip
ACTIVITY_COLUMNS = ["id", "title", "park", "age_group", "starts_on", "ends_on", "capacity",
                    "price"]  # fmt: skip


async def _carts(conn: AsyncConnection, event_id: str, zone: str, *where: Any) -> Table:
    found = (
        await conn.execute(
            select(carts)
            .where(carts.c.event_id == event_id, carts.c.cart_number.is_not(None), *where)
            .order_by(carts.c.created_at_ms)
        )
    ).all()
    header = ["cart_number", "client_number", "status", "total", "paid", "amount_due", "card",
              "settled_at", "payer_email"]  # fmt: skip
    rows = [
        [c.cart_number, c.client_number, c.status, exports.dollars(int(c.total_cents or 0)),
         exports.dollars(int(c.paid_cents or 0)), exports.dollars(int(c.amount_due_cents or 0)),
         f"{c.card_brand} ****{c.card_last4}" if c.card_last4 else "",
         iso_at(c.settled_at_ms, zone) if c.settled_at_ms else "", c.payer_email]
        for c in found
    ]  # fmt: skip
    return "carts", header, _text(rows)


async def _cart(conn: AsyncConnection, event_id: str, number: str, zone: str) -> list[Table]:
    table = await _carts(conn, event_id, zone, carts.c.cart_number == number)
    if not table[2]:
        raise NotFound("unknown_cart", "key")
    header, rows = await exports.registrations_rows(conn, event_id)
    return [table, ("registrations", header, _text(_where(header, rows, "cart_number", number)))]


async def _activity(conn: AsyncConnection, event_id: str, activity_id: str) -> list[Table]:
    found = (
        await conn.execute(
            select(activities).where(
                activities.c.event_id == event_id, activities.c.id == activity_id
            )
        )
    ).one_or_none()
    if found is None:
        raise NotFound("unknown_activity", "key")
    about = [found.id, found.title, found.park, found.age_group, found.starts_on,
             found.ends_on, found.capacity, exports.dollars(found.price_cents)]  # fmt: skip
    header, rows = await exports.rosters_rows(conn, event_id)
    w_header, waiting = await exports.waiting_lists_rows(conn, event_id)
    return [
        ("activity", ACTIVITY_COLUMNS, _text([about])),
        ("roster", header, _text(_where(header, rows, "activity_id", activity_id))),
        ("waiting_list", w_header, _text(_where(w_header, waiting, "activity_id", activity_id))),
    ]
