"""Seat counting: the never-oversold core.

A seat is never a number decremented somewhere. It is taken by a registration, by an item
of an open cart whose hold still runs, or by an item of a cart locked for payment; so an
expired hold frees its seats the instant it expires, with nothing to sweep, and a crash
can never leave a seat taken by nobody.

Whoever counts in order to take a seat first locks the activities' rows
(``lock_activities``: ``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the transaction
already holds the database's write lock), and counts in a later statement, which sees
every commit made before the lock was granted: two families can never both count the
same last seat as free.

Counts are correlated subqueries of the query that reads the activities, so a cart call
costs one round trip to the database for its seats, not one per activity and table: on
SQLite every statement is a hop to aiosqlite's thread and back, and under load each hop
waits for the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    String,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.ledger import (
    activities,
    cart_items,
    carts,
    offers,
    registrations,
    waiting_list,
)
from cart_service.model import ActivityInfo
from waitroom.db import reading


def live(now: Any) -> Any:
    """Carts whose items hold seats: open with a running hold, or locked for payment.
    ``now``: milliseconds, or a bound parameter of a statement built once."""
    return or_(
        and_(carts.c.status == "open", carts.c.hold_expires_at_ms > now),
        carts.c.status == "paying",
    )


def taken_column(now: Any) -> ColumnElement[int]:
    """Seats of the enclosing query's activity taken at ``now``: registrations, holds,
    and offers made to waiting families that still run (``offers``)."""
    registered = (
        select(func.count())
        .select_from(registrations)
        .where(registrations.c.activity_id == activities.c.id)
        .correlate(activities)
        .scalar_subquery()
    )
    held = (
        select(func.count())
        .select_from(cart_items.join(carts, carts.c.id == cart_items.c.cart_id))
        .where(cart_items.c.activity_id == activities.c.id, live(now))
        .correlate(activities)
        .scalar_subquery()
    )
    offered = (
        select(func.count())
        .select_from(offers)
        .where(
            offers.c.activity_id == activities.c.id,
            offers.c.status == "open",
            offers.c.expires_at_ms > now,
        )
        .correlate(activities)
        .scalar_subquery()
    )
    return (registered + held + offered).label("taken")


def waiting_column() -> ColumnElement[int]:
    """The length of the enclosing query's activity's waiting list."""
    return (
        select(func.count())
        .select_from(waiting_list)
        .where(waiting_list.c.activity_id == activities.c.id)
        .correlate(activities)
        .scalar_subquery()
        .label("waiting")
    )


def info_of(row: Any) -> ActivityInfo:
    """An ActivityInfo from a row with the activity's columns, ``taken`` and ``waiting``."""
    return ActivityInfo(
        id=row.id,
        kind=row.kind,
        title=row.title,
        park=row.park,
        age_group=row.age_group,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        price_cents=row.price_cents,
        capacity=row.capacity,
        # Families on the waiting list come first: a freed seat is theirs (``offers``).
        places_left=max(0, row.capacity - int(row.taken) - int(row.waiting)),
        min_age=row.min_age,
        max_age=row.max_age,
        class_min=row.class_min,
        class_max=row.class_max,
        childcare=bool(row.childcare),
        waiting=int(row.waiting),
    )


async def find_activities(
    conn: AsyncConnection, now: int, *where: Any, order: Sequence[Any] = ()
) -> list[ActivityInfo]:
    """The activities matching ``where``, with places left and waiting lists, in one query."""
    query = select(activities, taken_column(now), waiting_column()).where(*where)
    return [info_of(row) for row in (await conn.execute(query.order_by(*order))).all()]


async def lock_activities(conn: AsyncConnection, event_id: str, ids: Sequence[str]) -> None:
    """Lock the event's activities ``ids`` in id order until the transaction ends (so two
    transactions never wait on each other in a circle). SQLite: nothing to do, the
    transaction holds the database's write lock since ``BEGIN IMMEDIATE``.

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: an insert into a table whose foreign key
    names the activity (an item, a registration) takes ``FOR KEY SHARE`` on its row,
    which ``FOR UPDATE`` blocks. A settlement inserting registrations would then queue
    behind a seat counter while holding its own locks, and the two deadlock (seen in the
    two-replica drill). Seat counters still exclude each other, which is all this is for."""
    if conn.dialect.name == "sqlite" or not ids:
        return
    await conn.execute(
        select(activities.c.id)
        .where(activities.c.event_id == event_id, activities.c.id.in_(sorted(ids)))
        .order_by(activities.c.id)
        .with_for_update(key_share=True)
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """An activity as a participant would take it: its row, seats taken, and whether the
    participant is registered in it already or holds it in a live cart (which one)."""

    activity: Row[Any]
    taken: int
    registered: bool
    holder: str | None
    queued: int = 0  # families on the activity's waiting list: they come first

    @property
    def full(self) -> bool:
        """No seat for a newcomer: taken, or owed to the waiting list."""
        return bool(self.taken + self.queued >= self.activity.capacity)


def _registration_of(participant: Any) -> tuple[ColumnElement[bool], ...]:
    """The conditions on ``registrations`` for ``participant``'s registration in the
    enclosing query's activity."""
    return (
        registrations.c.activity_id == activities.c.id,
        registrations.c.participant == participant,
    )


def _hold_of(participant: Any, now: Any) -> Any:
    """The carts of ``participant``'s live holds of the enclosing query's activity."""
    return (
        select(cart_items.c.cart_id)
        .select_from(cart_items.join(carts, carts.c.id == cart_items.c.cart_id))
        .where(
            cart_items.c.activity_id == activities.c.id,
            cart_items.c.participant == participant,
            live(now),
        )
        .correlate(activities)
    )


def _candidates_query(counted: bool = True) -> Any:
    now: Any = bindparam("now")
    participant: Any = bindparam("participant")
    registered = (
        select(func.count())
        .select_from(registrations)
        .where(*_registration_of(participant))
        .correlate(activities)
        .scalar_subquery()
        .label("registered_self")
    )
    holder = _hold_of(participant, now).limit(1).scalar_subquery().label("holder")
    counts = (taken_column(now), waiting_column()) if counted else ()
    return select(activities, *counts, registered, holder).where(
        activities.c.event_id == bindparam("event_id"),
        activities.c.id.in_(bindparam("ids", expanding=True)),
    )


# Built once: every cart call that takes a seat runs it (construction is half the cost).
_CANDIDATES = _candidates_query()
_UNCOUNTED = _candidates_query(counted=False)


async def candidates(
    conn: AsyncConnection, event_id: str, ids: Sequence[str], participant: str, now: int
) -> dict[str, Candidate]:
    """Each of the event's activities ``ids`` as ``participant`` would take it, counted
    now: call ``lock_activities`` first, in the same transaction."""
    params = {"event_id": event_id, "ids": list(ids), "participant": participant, "now": now}
    return {
        row.id: Candidate(
            row, int(row.taken), bool(row.registered_self), row.holder, int(row.waiting)
        )
        for row in (await conn.execute(_CANDIDATES, params)).all()
    }


async def first_look(
    conn: AsyncConnection, event_id: str, ids: Sequence[str], participant: str, now: int
) -> dict[str, Candidate]:
    """``candidates`` without the seats counted (``taken`` and ``queued`` 0: none is
    ``full``), with no lock: what to try with ``take_seats``, which counts. The counts
    are the costly part of the query on PostgreSQL (a registration count visits every
    registration of the activity), so a call that takes its seats counts once."""
    params = {"event_id": event_id, "ids": list(ids), "participant": participant, "now": now}
    return {
        row.id: Candidate(row, 0, bool(row.registered_self), row.holder)
        for row in (await conn.execute(_UNCOUNTED, params)).all()
    }


def _take_seats_statement() -> Any:
    """PostgreSQL: the seats of ``ids`` that are still free, taken for the participant,
    and the cart's hold moved to ``until`` when one was; the ids taken. One statement:
    the INSERT ... SELECT counts as ``candidates`` does (a registration, a live hold, an
    open offer or a waiting family takes a seat; the participant is in no live cart and
    not registered), and the UPDATE rides in the same WITH (it runs whatever the outer
    SELECT reads, PostgreSQL's rule for data-modifying WITH). No parameter is named as a
    column of the tables written: SQLAlchemy would read it as a value to set."""
    now: Any = bindparam("now")
    participant: Any = bindparam("member", type_=String)
    cart_id: Any = bindparam("cart", type_=String)
    free = select(cart_id, activities.c.id, participant, activities.c.price_cents).where(
        activities.c.event_id == bindparam("event"),
        activities.c.id.in_(bindparam("ids", expanding=True)),
        ~exists().where(*_registration_of(participant)),
        ~_hold_of(participant, now).exists(),
        taken_column(now) + waiting_column() < activities.c.capacity,
    )
    taken = (
        postgresql.insert(cart_items)
        .from_select(["cart_id", "activity_id", "participant", "price_cents"], free)
        .returning(cart_items.c.activity_id)
        .cte("taken")
    )
    touched = (
        update(carts)
        .where(carts.c.id == cart_id, exists(select(taken.c.activity_id)))
        .values(hold_expires_at_ms=bindparam("until", type_=carts.c.hold_expires_at_ms.type))
        .returning(carts.c.id)
        .cte("touched")
    )
    return select(taken.c.activity_id).add_cte(touched)


_TAKE_SEATS = _take_seats_statement()


async def take_seats(
    conn: AsyncConnection,
    event_id: str,
    ids: Sequence[str],
    cart_id: str,
    participant: str,
    now: int,
    until: int,
) -> set[str]:
    """PostgreSQL: take a seat in each of the event's activities ``ids`` that still has one
    for ``participant``, in ``cart_id``, whose hold then runs to ``until``; the ids taken.
    Call ``lock_activities(ids)`` first, in the same transaction: this statement starts
    after the lock is granted, so it sees every seat taken before.

    With it the activity rows every family wants stay locked for two round trips (this
    statement and the commit) instead of four (count, insert, touch, commit): under
    load each round trip waits for a turn of the replica's event loop, and every other
    family that wants the week waits behind it."""
    params = {
        "event": event_id,
        "ids": list(ids),
        "cart": cart_id,
        "member": participant,
        "now": now,
        "until": until,
    }
    return set((await conn.execute(_TAKE_SEATS, params)).scalars().all())


async def seat_levels(engine: AsyncEngine, now: int) -> list[tuple[str, str, int, int, int]]:
    """(event, activity, capacity, places left, registered) of every activity (metrics)."""
    async with reading(engine) as conn:
        rows = (
            await conn.execute(
                select(
                    activities.c.id,
                    activities.c.event_id,
                    activities.c.capacity,
                    taken_column(now),
                    select(func.count())
                    .select_from(registrations)
                    .where(registrations.c.activity_id == activities.c.id)
                    .correlate(activities)
                    .scalar_subquery()
                    .label("registered"),
                )
            )
        ).all()
    return [
        (r.event_id, r.id, r.capacity, max(0, r.capacity - int(r.taken)), int(r.registered))
        for r in rows
    ]
