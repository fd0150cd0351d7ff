"""The allocation of a "requests" event (P'tit Victor's "phase d'attribution").

Every pending booking is decided in one transaction, in priority order: the phase it
was ordered in (members and pre-registered families first), then its order's place in
line (the moment it was ordered). A booking is cancelled, with its reason, when the
family's account is not validated, when the child's class level (as the family record
says now: the team corrects it before the run) does not fit, when it is a duplicate (the
child already has that place), or when no place is left; otherwise it is reserved and
becomes a registration. Each order then owes what was reserved, and its family gets one
email with the result of every booking; a cancelled booking may be ordered again while
a phase is still open.

Running it again decides only what was ordered since: nothing is decided twice. With
several cart replicas on PostgreSQL, the pending bookings are taken ``FOR UPDATE``, so
two runs at once decide each booking once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service import families as family_records
from cart_service.holds import ineligible
from cart_service.ledger import activities, bookings, carts, families, members, registrations
from cart_service.mail import Confirmation, queue_confirmation
from cart_service.orders import reserved_counts
from cart_service.phases import phases_of
from cart_service.seats import lock_activities
from cart_service.snapshots import cart_row, event_row, receipt_of
from waitroom.db import writing
from waitroom.schedule import iso_at
from waitroom.validation import Refused


@dataclass(slots=True)
class Allocation:
    """What a run decided: reserved bookings, cancelled ones by reason, orders told."""

    reserved: int = 0
    cancelled: Counter[str] = field(default_factory=Counter)
    orders: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "reserved": self.reserved,
            "cancelled": dict(sorted(self.cancelled.items())),
            "orders": self.orders,
        }


async def allocate(engine: AsyncEngine, event_id: str, now: int, mail_from: str) -> Allocation:
    """Decide every pending booking of ``event_id`` as of ``now``; refused unless the
    event takes requests. The emails are queued in the outbox, in the same transaction."""
    done = Allocation()
    async with writing(engine) as conn:
        event = await event_row(conn, event_id)
        if event.mode != "requests":
            raise Refused("not_a_requests_event")
        pending = (
            await conn.execute(
                select(bookings)
                .where(bookings.c.event_id == event_id, bookings.c.status == "pending")
                .order_by(bookings.c.phase_rank, bookings.c.ordered_at_ms, bookings.c.id)
                .with_for_update()
            )
        ).all()
        if not pending:
            return done
        ids = sorted({b.activity_id for b in pending})
        await lock_activities(conn, event_id, ids)
        places = await _Places.load(conn, ids)
        people = await _people(conn, {b.participant for b in pending})
        valid = await _validated(conn, {b.client_number for b in pending})
        owed: Counter[str] = Counter()
        for booking in pending:
            reason = _refusal(booking, places, people, valid)
            if reason is None:
                places.give(booking.activity_id, booking.participant)
                registration = await conn.execute(
                    insert(registrations).values(
                        activity_id=booking.activity_id,
                        participant=booking.participant,
                        cart_id=booking.cart_id,
                        price_cents=booking.price_cents,
                        confirmed_at_ms=now,
                    )
                )
                values: dict[str, Any] = {
                    "status": "reserved",
                    "registration_id": _key(registration),
                }
                owed[booking.cart_id] += booking.price_cents
                done.reserved += 1
            else:
                values = {"status": "cancelled", "reason": reason}
                done.cancelled[reason] += 1
            await conn.execute(
                update(bookings)
                .where(bookings.c.id == booking.id)
                .values(decided_at_ms=now, **values)
            )
        reorder_until = await _reorder_until(conn, event_id, event.timezone, now)
        for cart_id in sorted({b.cart_id for b in pending}):
            await _tell(conn, cart_id, owed[cart_id], reorder_until, mail_from, now)
            done.orders += 1
    return done


def _key(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


@dataclass(slots=True)
class _Places:
    """Each activity's row, places given so far, and who holds one."""

    rows: dict[str, Any]
    given: Counter[str]
    holders: set[tuple[str, str]]

    @classmethod
    async def load(cls, conn: AsyncConnection, ids: list[str]) -> _Places:
        rows = {
            row.id: row
            for row in await conn.execute(select(activities).where(activities.c.id.in_(ids)))
        }
        held = await conn.execute(
            select(registrations.c.activity_id, registrations.c.participant).where(
                registrations.c.activity_id.in_(ids)
            )
        )
        return cls(
            rows,
            Counter(await reserved_counts(conn, ids)),
            {(a, p) for a, p in held.all()},
        )

    def give(self, activity_id: str, participant: str) -> None:
        self.given[activity_id] += 1
        self.holders.add((activity_id, participant))


def _refusal(
    booking: Any,
    places: _Places,
    people: dict[str, family_records.Member],
    valid: dict[str, bool],
) -> str | None:
    """Why this booking is cancelled, or None: it gets its place."""
    act = places.rows[booking.activity_id]
    if not valid.get(booking.client_number, False):
        return "account_not_validated"
    misfit = ineligible(act, people[booking.participant])
    if misfit is not None:
        return misfit[0]  # wrong_class_level (or an age, for an activity by ages)
    if (booking.activity_id, booking.participant) in places.holders:
        return "duplicate"
    if places.given[booking.activity_id] >= act.capacity:
        return "full"
    return None


async def _people(conn: AsyncConnection, ids: set[str]) -> dict[str, family_records.Member]:
    rows = await conn.execute(select(members).where(members.c.id.in_(ids)))
    return {row.id: family_records.member_of(row) for row in rows.all()}


async def _validated(conn: AsyncConnection, numbers: set[str]) -> dict[str, bool]:
    rows = await conn.execute(
        select(families.c.client_number, families.c.validated).where(
            families.c.client_number.in_(numbers)
        )
    )
    return {number: bool(ok) for number, ok in rows.all()}


async def _reorder_until(conn: AsyncConnection, event_id: str, timezone: str, now: int) -> str:
    """The last deadline of a phase still to come or open: a cancelled booking may be
    ordered again until then (empty: none)."""
    ends = [p.closes_at_ms for p in await phases_of(conn, event_id) if p.closes_at_ms > now]
    return iso_at(max(ends), timezone) if ends else ""


async def _tell(
    conn: AsyncConnection, cart_id: str, due: int, reorder_until: str, mail_from: str, now: int
) -> None:
    """The order is allocated: it owes what was reserved (an order's bookings are all
    decided in one run); its family gets the result."""
    await conn.execute(
        update(carts)
        .where(carts.c.id == cart_id)
        .values(
            status="allocated",
            amount_due_cents=due,
            settled_at_ms=now,
        )
    )
    cart = await cart_row(conn, cart_id)
    assert cart is not None
    receipt = await receipt_of(conn, cart)
    await queue_confirmation(conn, cart_id, Confirmation(receipt, reorder_until), mail_from, now)
