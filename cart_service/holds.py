"""Holds: seats put aside for 20 minutes while a family fills its cart (Québec FAQ 8).

Add a participant to activities, copy a participant to every week already chosen (Lévis
step 3), remove a line, extend the hold once, join a full activity's waiting list
(FAQ 6). Each participant must fit the activity's ages and class levels, must not be
registered already, and sits in at most one live cart per activity, so a paid cart can
always become registrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service import families as family_records
from cart_service.desk import Desk, changing, lengthened_hold, open_cart, touch
from cart_service.family_rules import booking_member
from cart_service.ledger import cart_items, carts, waiting_list
from cart_service.model import CartSnapshot, Outcome, Session
from cart_service.orders import ordering_phase, reserved_counts, standing_bookings
from cart_service.seats import Candidate, candidates, first_look, lock_activities, take_seats
from cart_service.snapshots import cart_row, event_row, live_items
from waitroom.db import reading, writing
from waitroom.metrics import CART_EXPIRED, CART_EXTENSIONS, CART_HOLDS
from waitroom.validation import FieldError, NotFound, Refused

MAX_ITEMS_PER_CALL = 20


async def add_items(
    desk: Desk, session: Session, participant: str, activity_ids: Sequence[str]
) -> tuple[CartSnapshot, list[Outcome]]:
    """Put ``participant`` in each activity, holding a seat in each; a full one offers
    its waiting list, an ineligible one is refused with the reason. Idempotent: an
    activity this cart already holds for ``participant`` is "held" again, nothing added
    (so the gateway may send the call again to another replica when one dies)."""
    wanted = list(dict.fromkeys(a.strip() for a in activity_ids if a.strip()))
    if not wanted:
        raise FieldError("required", "activity_ids")
    if len(wanted) > MAX_ITEMS_PER_CALL:
        raise FieldError("too_many", "activity_ids")
    now = desk.clock_ms()
    async with changing(desk, session) as change:
        conn = change.conn
        cart = await open_cart(desk, conn, session)
        member = await booking_member(conn, cart, participant, "participant")
        event = await event_row(conn, session.event_id)
        await _one_child_per_order(conn, event, cart.id, member.id)
        if event.mode == "requests":
            await ordering_phase(conn, event.id, cart.client_number, member, now)
        if event.mode != "requests" and conn.dialect.name == "postgresql":
            results = await _take_seats(desk, conn, cart, member, wanted, now)
        else:
            results = await _take_locked(desk, conn, event, cart, member, wanted, now)
    snapshot = change.cart
    for outcome in results.values():
        CART_HOLDS.labels(session.event_id, outcome.outcome).inc()
    return snapshot, [results[a] for a in wanted]


async def _take_locked(
    desk: Desk,
    conn: AsyncConnection,
    event: Row[Any],
    cart: Row[Any],
    member: family_records.Member,
    wanted: list[str],
    now: int,
) -> dict[str, Outcome]:
    """``add_items``'s answers, counted with the activities locked from the count to the
    commit: SQLite (where the transaction holds the write lock anyway), and requests."""
    await lock_activities(conn, cart.event_id, wanted)
    found = await candidates(conn, cart.event_id, wanted, member.id, now)
    results = {a: _outcome(a, found.get(a), cart.id, member) for a in wanted}
    if event.mode == "requests":
        results = await _as_requests(conn, results, found, member.id)
    await _hold(desk, conn, cart, member, [found[a].activity for a in _new(results, found, cart)])
    return results


async def _take_seats(
    desk: Desk,
    conn: AsyncConnection,
    cart: Row[Any],
    member: family_records.Member,
    wanted: list[str],
    now: int,
) -> dict[str, Outcome]:
    """``add_items``'s answers on PostgreSQL: a first look without locks or counts finds
    what the participant may ask for; those activities are then locked and their free
    seats taken in one statement that counts (``seats.take_seats``), so the rows every
    family wants stay locked two round trips. An activity it took no seat in (full, or
    the participant put in another cart meanwhile) is counted under the lock and
    answered from that count, as on the locked path."""
    found = await first_look(conn, cart.event_id, wanted, member.id, now)
    results = {a: _outcome(a, found.get(a), cart.id, member) for a in wanted}
    tried = _new(results, found, cart)
    if not tried:
        return results
    await lock_activities(conn, cart.event_id, tried)
    until = lengthened_hold(desk, cart)
    taken = await take_seats(conn, cart.event_id, tried, cart.id, member.id, now, until)
    lost = [a for a in tried if a not in taken]
    if lost:
        again = await candidates(conn, cart.event_id, lost, member.id, now)
        recounted = {a: _outcome(a, again.get(a), cart.id, member) for a in lost}
        results.update(recounted)
        # A seat freed between the two statements (a line removed): taken as usual.
        await _hold(
            desk, conn, cart, member, [again[a].activity for a in _new(recounted, again, cart)]
        )
    return results


def _new(results: dict[str, Outcome], found: dict[str, Candidate], cart: Row[Any]) -> list[str]:
    """The activities answered "held" that this cart does not hold yet, in asked order: one
    it holds already (a retry of this very call, a second click) is held once."""
    return [a for a, o in results.items() if o.outcome == "held" and found[a].holder != cart.id]


async def _hold(
    desk: Desk,
    conn: AsyncConnection,
    cart: Row[Any],
    member: family_records.Member,
    acts: Sequence[Row[Any]],
) -> None:
    """A seat in each of ``acts`` for ``member`` in ``cart``, counted free under the lock,
    and the hold lengthened."""
    if not acts:
        return
    await conn.execute(
        insert(cart_items),
        [
            {"cart_id": cart.id, "activity_id": act.id, "participant": member.id,
             "price_cents": act.price_cents}
            for act in acts
        ],
    )  # fmt: skip
    await touch(desk, conn, cart)


async def duplicate(
    desk: Desk, session: Session, participant: str
) -> tuple[CartSnapshot, list[Outcome]]:
    """Put ``participant`` in every activity already chosen in the cart (Lévis step 3)."""
    now = desk.clock_ms()
    async with reading(desk.engine) as conn:
        cart = await cart_row(conn, session.cart_id)
        lines = [] if cart is None else await live_items(conn, cart, now)
    chosen = sorted({line.activity.id for line in lines})
    if not chosen:
        raise Refused("cart_empty")
    already = {line.activity.id for line in lines if line.participant == participant.strip()}
    targets = [a for a in chosen if a not in already]
    if not targets:
        raise Refused("already_in_every_activity", "participant")
    return await add_items(desk, session, participant, targets)


async def remove_item(
    desk: Desk, session: Session, activity_id: str, participant: str
) -> CartSnapshot:
    """Give one participant's seat in one activity back."""
    async with changing(desk, session) as change:
        conn = change.conn
        cart = await open_cart(desk, conn, session)
        gone = await conn.execute(
            delete(cart_items).where(
                cart_items.c.cart_id == cart.id,
                cart_items.c.activity_id == activity_id,
                cart_items.c.participant == participant,
            )
        )
        if not gone.rowcount:
            raise NotFound("not_in_cart")
        await touch(desk, conn, cart)
    return change.cart


async def extend(desk: Desk, session: Session) -> CartSnapshot:
    """Twenty more minutes, once (Québec FAQ 8)."""
    now = desk.clock_ms()
    async with changing(desk, session) as change:
        conn = change.conn
        cart = await open_cart(desk, conn, session)
        if not await live_items(conn, cart, now):
            raise Refused("cart_empty")
        if cart.extension_used:
            raise Refused("extension_used")
        await conn.execute(
            update(carts)
            .where(carts.c.id == cart.id)
            .values(hold_expires_at_ms=cart.hold_expires_at_ms + desk.hold_ms, extension_used=True)
        )
    snapshot = change.cart
    CART_EXTENSIONS.labels(session.event_id).inc()
    return snapshot


async def _as_requests(
    conn: AsyncConnection, results: dict[str, Outcome], found: dict[str, Candidate], member: str
) -> dict[str, Outcome]:
    """A "requests" event's answers: a seat is asked for, not taken, so only reserved
    places make an activity full (carts' items hold none); a booking that stands
    (pending or reserved) is not ordered twice."""
    asked = [a for a, o in results.items() if o.outcome in ("held", "full")]
    standing = await standing_bookings(conn, member, asked)
    reserved = await reserved_counts(conn, asked)
    answers = dict(results)
    for a in asked:
        if a in standing:
            answers[a] = Outcome(a, "refused", "already_ordered")
        elif results[a].outcome == "full" and reserved.get(a, 0) < found[a].activity.capacity:
            answers[a] = Outcome(a, "held")
    return answers


async def _one_child_per_order(
    conn: AsyncConnection, event: Row[Any], cart_id: str, participant: str
) -> None:
    """P'tit Victor: "un seul enfant par commande": on such an event a cart holds one
    participant's bookings; another child is ordered in a cart of its own (409)."""
    if not event.one_child_per_order:
        return
    other = await conn.execute(
        select(cart_items.c.participant)
        .where(cart_items.c.cart_id == cart_id, cart_items.c.participant != participant)
        .limit(1)
    )
    if other.first() is not None:
        raise Refused("one_child_per_order", "participant")


async def join_waiting_list(
    desk: Desk, session: Session, activity_id: str, participant: str
) -> tuple[int, int, str]:
    """Put a participant on a full activity's waiting list: (position, joined at ms, the
    event's time zone to show it in)."""
    now = desk.clock_ms()
    async with writing(desk.engine) as conn:
        cart = await open_cart(desk, conn, session)
        member = await booking_member(conn, cart, participant, "participant")
        await lock_activities(conn, session.event_id, [activity_id])
        found = (await candidates(conn, session.event_id, [activity_id], member.id, now)).get(
            activity_id
        )
        if found is None:
            raise NotFound("unknown_activity", "activity_id")
        refusal = ineligible(found.activity, member) or (
            ("already_registered", "") if found.registered else None
        )
        if refusal is not None:
            raise Refused(refusal[0], "participant", detail=refusal[1])
        if not found.full:
            raise Refused("places_left", "activity_id")
        entry = await _waiting_entry(conn, activity_id, member.id)
        if entry is None:
            await conn.execute(
                insert(waiting_list).values(
                    activity_id=activity_id,
                    participant=member.id,
                    client_number=cart.client_number,
                    joined_at_ms=now,
                )
            )
            entry = await _waiting_entry(conn, activity_id, member.id)
            assert entry is not None
        position = (
            await conn.execute(
                select(func.count()).where(
                    waiting_list.c.activity_id == activity_id, waiting_list.c.id <= entry.id
                )
            )
        ).scalar_one()
        timezone = (await event_row(conn, session.event_id)).timezone
        return int(position), int(entry.joined_at_ms), timezone


async def count_expired(engine: AsyncEngine, since_ms: int, until_ms: int) -> None:
    """Count the holds that ran out in (since, until] with seats in them (metrics)."""
    async with reading(engine) as conn:
        rows = (
            await conn.execute(
                select(carts.c.event_id, func.count(func.distinct(carts.c.id)))
                .select_from(carts.join(cart_items, cart_items.c.cart_id == carts.c.id))
                .where(
                    carts.c.status == "open",
                    carts.c.hold_expires_at_ms > since_ms,
                    carts.c.hold_expires_at_ms <= until_ms,
                )
                .group_by(carts.c.event_id)
            )
        ).all()
    for event_id, count in rows:
        CART_EXPIRED.labels(event_id).inc(int(count))


def ineligible(act: Row[Any], member: family_records.Member) -> tuple[str, str] | None:
    """Why ``member`` may not take part in ``act`` (code, accepted range), or None."""
    if act.min_age is not None or act.max_age is not None:
        age = member.age_on(act.starts_on)
        accepted = f"{act.min_age if act.min_age is not None else ''}-{act.max_age or ''}"
        if act.min_age is not None and age < act.min_age:
            return "too_young", accepted
        if act.max_age is not None and age > act.max_age:
            return "too_old", accepted
    if act.class_min is not None or act.class_max is not None:
        low = act.class_min if act.class_min is not None else 0
        high = act.class_max if act.class_max is not None else 12
        if member.class_level is None or not low <= member.class_level <= high:
            return "wrong_class_level", f"{low}-{high}"
    return None


async def _waiting_entry(
    conn: AsyncConnection, activity_id: str, participant: str
) -> Any:  # a (id, joined_at_ms) row, or None
    return (
        await conn.execute(
            select(waiting_list.c.id, waiting_list.c.joined_at_ms).where(
                waiting_list.c.activity_id == activity_id,
                waiting_list.c.participant == participant,
            )
        )
    ).one_or_none()


def _outcome(
    activity_id: str, found: Candidate | None, cart_id: str, member: family_records.Member
) -> Outcome:
    """What asking for a seat in ``found`` gives ``member``, counted under the lock."""
    if found is None:
        return Outcome(activity_id, "refused", "unknown_activity")
    refusal = ineligible(found.activity, member)
    if refusal is not None:
        return Outcome(activity_id, "refused", *refusal)
    if found.registered:
        return Outcome(activity_id, "refused", "already_registered")
    if found.holder == cart_id:  # asking again for what this cart holds: the same answer
        return Outcome(activity_id, "held")
    if found.holder is not None:
        return Outcome(activity_id, "refused", "already_in_another_cart")
    if found.full:
        return Outcome(activity_id, "full")
    return Outcome(activity_id, "held")
