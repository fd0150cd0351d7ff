"""The night's data out, as CSV (``waitroom export``): registrations for accounting,
rosters per activity for the camps, waiting lists, payments, and the Relevé 24 data
(childcare paid, per payer and child).

Each export is one read of the ledger (or of the payment tables) and a list of rows with
fixed columns; times are in the event's time zone, amounts in dollars with two decimals
(as accounting software reads them) and in cents.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.ledger import (
    activities,
    carts,
    families,
    members,
    registration_events,
    registrations,
    waiting_list,
)
from waitroom.db import reading
from waitroom.schedule import iso_at
from waitroom.validation import NotFound

Rows = tuple[list[str], list[list[object]]]


def dollars(cents: int) -> str:
    return f"{cents / 100:.2f}"


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


async def zone_of(conn: AsyncConnection, event_id: str) -> str:
    """The event's time zone; NotFound ``unknown_event``."""
    found = await conn.execute(
        select(registration_events.c.timezone).where(registration_events.c.id == event_id)
    )
    zone = found.scalar_one_or_none()
    if zone is None:
        raise NotFound("unknown_event", "event")
    return str(zone)


async def registrations_rows(conn: AsyncConnection, event_id: str) -> Rows:
    zone = await zone_of(conn, event_id)
    payer = members.alias("payer")
    query = (
        select(
            registrations.c.id.label("registration_id"),
            carts.c.cart_number,
            carts.c.client_number,
            registrations.c.participant,
            members.c.first_name,
            members.c.last_name,
            members.c.birth_date,
            activities.c.id,
            activities.c.title,
            activities.c.starts_on,
            activities.c.ends_on,
            registrations.c.price_cents,
            registrations.c.confirmed_at_ms,
            carts.c.status,
            payer.c.first_name.label("payer_first"),
            payer.c.last_name.label("payer_last"),
            carts.c.payer_email,
        )
        .join(carts, carts.c.id == registrations.c.cart_id)
        .join(members, members.c.id == registrations.c.participant)
        .join(activities, activities.c.id == registrations.c.activity_id)
        .outerjoin(payer, payer.c.id == carts.c.payer_member)
        .where(activities.c.event_id == event_id)
        .order_by(registrations.c.confirmed_at_ms, registrations.c.id)
    )
    header = [
        "registration_id",
        "cart_number", "client_number", "participant", "first_name", "last_name",
        "birth_date", "activity_id", "activity", "starts_on", "ends_on", "price",
        "price_cents", "confirmed_at", "payment", "payer", "payer_email",
    ]  # fmt: skip
    rows: list[list[object]] = [
        [
            r.registration_id,
            r.cart_number,
            r.client_number,
            r.participant,
            r.first_name,
            r.last_name,
            r.birth_date.isoformat(),
            r.id,
            r.title,
            r.starts_on.isoformat(),
            r.ends_on.isoformat(),
            dollars(r.price_cents),
            r.price_cents,
            iso_at(r.confirmed_at_ms, zone),
            "paid" if r.status == "paid" else "deferred",
            f"{r.payer_first or ''} {r.payer_last or ''}".strip(),
            r.payer_email or "",
        ]
        for r in (await conn.execute(query)).all()
    ]
    return header, rows


async def rosters_rows(conn: AsyncConnection, event_id: str) -> Rows:
    """Every activity's participants, by activity then name: what a camp's team needs."""
    await zone_of(conn, event_id)
    query = (
        select(
            activities.c.id,
            activities.c.title,
            activities.c.park,
            activities.c.starts_on,
            activities.c.ends_on,
            members.c.id.label("participant"),
            members.c.first_name,
            members.c.last_name,
            members.c.birth_date,
            members.c.class_level,
            families.c.client_number,
            families.c.principal_phone,
            families.c.email,
        )
        .join(registrations, registrations.c.activity_id == activities.c.id)
        .join(members, members.c.id == registrations.c.participant)
        .join(families, families.c.client_number == members.c.client_number)
        .where(activities.c.event_id == event_id)
        .order_by(
            activities.c.starts_on, activities.c.id, members.c.last_name, members.c.first_name
        )
    )
    header = [
        "activity_id", "activity", "park", "starts_on", "ends_on", "participant",
        "first_name", "last_name", "birth_date", "age_on_first_day", "class_level",
        "client_number", "principal_phone", "email",
    ]  # fmt: skip
    rows: list[list[object]] = [
        [
            r.id,
            r.title,
            r.park,
            r.starts_on.isoformat(),
            r.ends_on.isoformat(),
            r.participant,
            r.first_name,
            r.last_name,
            r.birth_date.isoformat(),
            age_on(r.birth_date, r.starts_on),
            "" if r.class_level is None else r.class_level,
            r.client_number,
            r.principal_phone,
            r.email or "",
        ]
        for r in (await conn.execute(query)).all()
    ]
    return header, rows


async def waiting_lists_rows(conn: AsyncConnection, event_id: str) -> Rows:
    """Each activity's waiting list in order, with each participant's position."""
    zone = await zone_of(conn, event_id)
    query = (
        select(
            activities.c.id,
            activities.c.title,
            waiting_list.c.participant,
            members.c.first_name,
            members.c.last_name,
            waiting_list.c.client_number,
            families.c.principal_phone,
            families.c.email,
            waiting_list.c.joined_at_ms,
        )
        .join(waiting_list, waiting_list.c.activity_id == activities.c.id)
        .join(members, members.c.id == waiting_list.c.participant)
        .join(families, families.c.client_number == waiting_list.c.client_number)
        .where(activities.c.event_id == event_id)
        .order_by(activities.c.id, waiting_list.c.id)
    )
    header = [
        "activity_id", "activity", "position", "participant", "first_name", "last_name",
        "client_number", "principal_phone", "email", "joined_at",
    ]  # fmt: skip
    rows: list[list[object]] = []
    position: dict[str, int] = {}
    for r in (await conn.execute(query)).all():
        position[r.id] = position.get(r.id, 0) + 1
        rows.append([
            r.id, r.title, position[r.id], r.participant, r.first_name, r.last_name,
            r.client_number, r.principal_phone, r.email or "", iso_at(r.joined_at_ms, zone),
        ])  # fmt: skip
    return header, rows


async def releve24_rows(conn: AsyncConnection, event_id: str) -> Rows:
    """Relevé 24 (Québec's childcare-expense slip): childcare paid, per payer and child.
    The payer of a cart holding childcare is the family's responsible person (checked at
    payment, Québec FAQ 13)."""
    await zone_of(conn, event_id)
    payer = members.alias("payer")
    child = members.alias("child")
    query = (
        select(
            carts.c.client_number,
            payer.c.id.label("payer_id"),
            payer.c.first_name.label("payer_first"),
            payer.c.last_name.label("payer_last"),
            child.c.id.label("child_id"),
            child.c.first_name.label("child_first"),
            child.c.last_name.label("child_last"),
            child.c.birth_date,
            func.sum(registrations.c.price_cents).label("cents"),
            func.count().label("activities"),
        )
        .select_from(registrations)
        .join(carts, carts.c.id == registrations.c.cart_id)
        .join(activities, activities.c.id == registrations.c.activity_id)
        .join(payer, payer.c.id == carts.c.payer_member)
        .join(child, child.c.id == registrations.c.participant)
        .where(
            activities.c.event_id == event_id,
            activities.c.childcare.is_(True),
            carts.c.status == "paid",
        )
        .group_by(
            carts.c.client_number,
            payer.c.id,
            payer.c.first_name,
            payer.c.last_name,
            child.c.id,
            child.c.first_name,
            child.c.last_name,
            child.c.birth_date,
        )
        .order_by(payer.c.last_name, payer.c.id, child.c.birth_date)
    )
    header = [
        "client_number", "payer", "payer_first_name", "payer_last_name", "child",
        "child_first_name", "child_last_name", "child_birth_date", "activities",
        "childcare_paid", "childcare_paid_cents",
    ]  # fmt: skip
    rows: list[list[object]] = [
        [
            r.client_number,
            r.payer_id,
            r.payer_first,
            r.payer_last,
            r.child_id,
            r.child_first,
            r.child_last,
            r.birth_date.isoformat(),
            r.activities,
            dollars(int(r.cents)),
            int(r.cents),
        ]
        for r in (await conn.execute(query)).all()
    ]
    return header, rows


LEDGER_EXPORTS: dict[str, Callable[[AsyncConnection, str], Awaitable[Rows]]] = {
    "registrations": registrations_rows,
    "rosters": rosters_rows,
    "waiting-lists": waiting_lists_rows,
    "releve24": releve24_rows,
}


async def export(engine: AsyncEngine, kind: str, event_id: str) -> Rows:
    async with reading(engine) as conn:
        return await LEDGER_EXPORTS[kind](conn, event_id)


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV with a header line, UTF-8, comma separated, quoted where needed (RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
