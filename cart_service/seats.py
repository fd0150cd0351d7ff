"""Seat counting: the never-oversold core.

A seat is never a number decremented somewhere. It is taken by a registration, by an item
of an open cart whose hold still runs, or by an item of a cart locked for payment; so an
expired hold frees its seats the instant it expires, with nothing to sweep, and a crash
can never leave a seat taken by nobody.

Whoever counts in order to take a seat first locks the activity's row
(``locked_activity``: ``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's transaction
already holds the database's write lock), so two families can never both count the same
last seat as free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.ledger import activities, cart_items, carts, registrations, waiting_list
from cart_service.model import ActivityInfo
from waitroom.db import reading


def live(now: int) -> Any:
    """Carts whose items hold seats: open with a running hold, or locked for payment."""
    return or_(
        and_(carts.c.status == "open", carts.c.hold_expires_at_ms > now),
        carts.c.status == "paying",
    )


async def taken(conn: AsyncConnection, activity_id: str, now: int) -> int:
    """Seats of one activity taken at ``now``."""
    counts = await taken_counts(conn, [activity_id], now)
    return counts.get(activity_id, 0)


async def taken_counts(conn: AsyncConnection, ids: Iterable[str], now: int) -> dict[str, int]:
    """Seats taken at ``now``, for each activity id (registrations plus live holds)."""
    wanted = list(ids)
    counts: dict[str, int] = dict.fromkeys(wanted, 0)
    if not wanted:
        return counts
    confirmed = (
        select(registrations.c.activity_id, func.count())
        .where(registrations.c.activity_id.in_(wanted))
        .group_by(registrations.c.activity_id)
    )
    held = (
        select(cart_items.c.activity_id, func.count())
        .select_from(cart_items.join(carts, carts.c.id == cart_items.c.cart_id))
        .where(cart_items.c.activity_id.in_(wanted), live(now))
        .group_by(cart_items.c.activity_id)
    )
    for query in (confirmed, held):
        for activity_id, n in (await conn.execute(query)).all():
            counts[activity_id] += int(n)
    return counts


async def activity_infos(
    conn: AsyncConnection, rows: Sequence[Row[Any]], now: int
) -> list[ActivityInfo]:
    """``activities`` rows with their places left and waiting-list lengths at ``now``."""
    ids = [row.id for row in rows]
    counts = await taken_counts(conn, ids, now)
    waiting: dict[str, int] = {}
    if ids:
        waiting = {
            activity_id: int(n)
            for activity_id, n in (
                await conn.execute(
                    select(waiting_list.c.activity_id, func.count())
                    .where(waiting_list.c.activity_id.in_(ids))
                    .group_by(waiting_list.c.activity_id)
                )
            ).all()
        }
    return [
        ActivityInfo(
            id=row.id,
            kind=row.kind,
            title=row.title,
            park=row.park,
            age_group=row.age_group,
            starts_on=row.starts_on,
            ends_on=row.ends_on,
            price_cents=row.price_cents,
            capacity=row.capacity,
            places_left=max(0, row.capacity - counts[row.id]),
            min_age=row.min_age,
            max_age=row.max_age,
            class_min=row.class_min,
            class_max=row.class_max,
            childcare=bool(row.childcare),
            waiting=waiting.get(row.id, 0),
        )
        for row in rows
    ]


async def locked_activity(
    conn: AsyncConnection, event_id: str, activity_id: str
) -> Row[Any] | None:
    """The event's activity row, locked until the transaction ends (or None)."""
    return (
        await conn.execute(
            select(activities)
            .where(activities.c.id == activity_id, activities.c.event_id == event_id)
            .with_for_update()
        )
    ).one_or_none()


async def seat_levels(engine: AsyncEngine, now: int) -> list[tuple[str, str, int, int, int]]:
    """(event, activity, capacity, places left, registered) of every activity (metrics)."""
    async with reading(engine) as conn:
        rows = (
            await conn.execute(
                select(activities.c.id, activities.c.event_id, activities.c.capacity)
            )
        ).all()
        counts = await taken_counts(conn, [r.id for r in rows], now)
        registered: dict[str, int] = dict(
            (
                await conn.execute(
                    select(registrations.c.activity_id, func.count()).group_by(
                        registrations.c.activity_id
                    )
                )
            ).all()
        )
    return [
        (
            r.event_id,
            r.id,
            r.capacity,
            max(0, r.capacity - counts[r.id]),
            int(registered.get(r.id, 0)),
        )
        for r in rows
    ]
