"""The catalogue: searching an event's activities (Lévis step 2), and loading one.

``load_catalogue`` is the one public way to put an event's activities and families in
the ledger (the demo, the drill and the tests all use it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.desk import Desk
from cart_service.ledger import activities, create_schema, families, members, registration_events
from cart_service.model import ActivityInfo
from cart_service.seats import find_activities
from cart_service.snapshots import event_row
from waitroom.db import reading, writing
from waitroom.validation import FieldError

KINDS = ("day_camp", "course")
Row = Mapping[str, Any]
FamilyRows = tuple[Row, Sequence[Row]]  # a ``families`` row and its ``members`` rows


@dataclass(frozen=True, slots=True)
class Found:
    """What a search gives: the matching activities, every park and age group of the
    event (the search form's choices), and whether the event defers payment."""

    activities: list[ActivityInfo]
    parks: list[str]
    age_groups: list[str]
    payment_deferred: bool


async def search(
    desk: Desk,
    event_id: str,
    parks: Sequence[str] = (),
    age_groups: Sequence[str] = (),
    kind: str = "",
    facets_only: bool = False,
) -> Found:
    """Activities of the event matching the filters, with places left.
    ``facets_only``: no activities, only the rest (what the search form needs)."""
    if kind not in ("", *KINDS):
        raise FieldError("invalid_kind", "kind")
    now = desk.clock_ms()
    async with reading(desk.engine) as conn:
        event = await event_row(conn, event_id)
        where = [activities.c.event_id == event_id]
        if parks:
            where.append(activities.c.park.in_(list(parks)))
        if age_groups:
            where.append(activities.c.age_group.in_(list(age_groups)))
        if kind:
            where.append(activities.c.kind == kind)
        order = (activities.c.park, activities.c.age_group, activities.c.starts_on)
        found = [] if facets_only else await find_activities(conn, now, *where, order=order)
        return Found(
            found,
            await _distinct(conn, activities.c.park, event_id),
            await _distinct(conn, activities.c.age_group, event_id),
            bool(event.payment_deferred),
        )


def availability(places_left: int, capacity: int) -> str:
    """Places as anyone may see them before admission: a level, never a count."""
    if places_left <= 0:
        return "full"
    if places_left <= max(3, capacity // 10):
        return "few"
    return "available"


async def _distinct(conn: AsyncConnection, column: Any, event_id: str) -> list[str]:
    """Every value of an activity column in the event, sorted (the search form's choices)."""
    query = select(column).where(activities.c.event_id == event_id).distinct().order_by(column)
    return list((await conn.execute(query)).scalars())


async def load_catalogue(
    engine: AsyncEngine,
    event: Row,
    activity_rows: Sequence[Row],
    family_rows: Sequence[FamilyRows] = (),
) -> bool:
    """Create the ledger's tables if needed, then put ``event`` (a ``registration_events``
    row), its activities and the families not known yet in one transaction. Returns False,
    changing nothing, when the event is already there."""
    await create_schema(engine)
    async with writing(engine) as conn:
        present = (
            await conn.execute(
                select(registration_events.c.id).where(registration_events.c.id == event["id"])
            )
        ).one_or_none()
        if present is not None:
            return False
        await conn.execute(insert(registration_events).values(**event))
        if activity_rows:
            await conn.execute(insert(activities), [dict(a) for a in activity_rows])
        numbers = [f["client_number"] for f, _ in family_rows]
        known: set[str] = set()
        for start in range(0, len(numbers), 500):  # stay under SQLite's variable limit
            chunk = numbers[start : start + 500]
            query = select(families.c.client_number).where(families.c.client_number.in_(chunk))
            known.update((await conn.execute(query)).scalars())
        new = [(f, people) for f, people in family_rows if f["client_number"] not in known]
        if new:
            await conn.execute(insert(families), [{"validated": True, **f} for f, _ in new])
            people = [dict(p) for _, group in new for p in group]
            if people:
                await conn.execute(insert(members), people)
    return True
