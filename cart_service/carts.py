"""Carts: seats held for 20 minutes, participants checked, payer rules, checkout, receipts.

Each admitted session has one cart (``<event>/<ticket id>``). Every change runs in one
transaction that locks the cart's row, then the rows of the activities it touches, in id
order (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite takes its write lock at ``BEGIN
IMMEDIATE``), so two families can never both take the last seat.

A seat is taken by a registration, by an item of an open cart whose hold is still running,
or by an item of a cart locked for payment. An expired hold frees its seats the moment it
expires: nothing has to sweep it. A participant is in at most one live cart per activity,
so a paid cart can always turn into registrations: never a paid cart without them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service import families as family_records
from cart_service.ledger import (
    activities,
    cart_items,
    carts,
    members,
    reading,
    registration_events,
    registrations,
    waiting_list,
    writing,
)
from cart_service.mail import Confirmation, queue_confirmation
from waitroom.metrics import CART_EXPIRED, CART_EXTENSIONS, CART_HOLDS, CHECKOUTS
from waitroom.validation import FieldError, NotFound, Refused

RELATIONSHIPS = ("responsible", "spouse", "parent", "other", "child")
MAX_ITEMS_PER_CALL = 20
ADULT_AGE = 18


@dataclass(frozen=True, slots=True)
class Session:
    """An admitted session, as its admission token says."""

    event_id: str
    ticket_id: str

    @property
    def cart_id(self) -> str:
        return f"{self.event_id}/{self.ticket_id}"


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    id: str
    kind: str
    title: str
    park: str
    age_group: str
    starts_on: date
    ends_on: date
    price_cents: int
    capacity: int
    places_left: int
    min_age: int | None
    max_age: int | None
    class_min: int | None
    class_max: int | None
    childcare: bool
    waiting: int


@dataclass(frozen=True, slots=True)
class Line:
    activity: ActivityInfo
    participant: str
    participant_name: str
    price_cents: int


@dataclass(frozen=True, slots=True)
class Payer:
    member: str
    name: str
    email: str


@dataclass(slots=True)
class CartSnapshot:
    event_id: str
    status: str  # open | expired | paying | paid | confirmed
    hold_expires_at_ms: int
    extension_used: bool
    items: list[Line]
    released: list[Line]
    client_number: str
    members: list[family_records.Member]
    payer: Payer | None
    conditions_accepted: bool
    total_cents: int
    currency: str
    timezone: str
    locked_until_ms: int
    cart_number: str
    payment_deferred: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    activity_id: str
    outcome: str  # held | full | refused
    code: str = ""
    detail: str = ""

    @property
    def waiting_list_offered(self) -> bool:
        return self.outcome == "full"


@dataclass(slots=True)
class Receipt:
    cart_number: str
    owner_number: str
    event_id: str
    payer_name: str
    payer_email: str
    issued_at_ms: int
    lines: list[Line]
    total_cents: int
    paid_cents: int
    amount_due_cents: int
    currency: str
    timezone: str
    card_brand: str
    card_last4: str
    payment_status: str  # paid | deferred


@dataclass(frozen=True, slots=True)
class CardInput:
    number: str
    expiry: str
    cvv: str

    def __repr__(self) -> str:  # never log a card
        return "CardInput(***)"


@dataclass(frozen=True, slots=True)
class PaymentResult:
    status: str  # approved | declined | unknown | not_sent
    decline_reason: str = ""
    brand: str = ""
    last4: str = ""


class PaymentUnreachable(Exception):
    """The payment adapter did not answer: the payment's outcome is not known here."""


class Payments(Protocol):
    """What the cart service needs from the payment adapter."""

    async def charge(
        self,
        key: str,
        cart_id: str,
        amount_cents: int,
        currency: str,
        card: CardInput,
        description: str,
    ) -> PaymentResult:
        """Charge once per key; raises FieldError for a wrong card field."""

    async def lookup(self, key: str) -> PaymentResult | None:
        """The payment under ``key`` (reconciled), or None when there is none."""


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    outcome: str  # paid | confirmed | declined | pending
    cart: CartSnapshot
    receipt: Receipt | None = None
    decline_reason: str = ""


@dataclass(slots=True)
class Ledger:
    """The cart service's domain: every operation one or two short transactions."""

    engine: AsyncEngine
    payments: Payments
    clock_ms: Callable[[], int]
    hold_ms: int = 20 * 60 * 1000
    lock_ms: int = 120 * 1000
    mail_from: str = "inscriptions@waitroom.invalid"
    # Called after a confirmation commits (the service flushes its outbox then).
    on_confirmed: Callable[[], None] = field(default=lambda: None)

    # -- catalogue -------------------------------------------------------------------

    async def search(
        self,
        event_id: str,
        parks: Sequence[str] = (),
        age_groups: Sequence[str] = (),
        kind: str = "",
        facets_only: bool = False,
    ) -> tuple[list[ActivityInfo], list[str], list[str], bool]:
        """Activities of the event matching the filters, with places left; plus every park
        and age group of the event (for the search form) and whether payment is deferred.
        ``facets_only``: no activities, only the rest (what the search form needs)."""
        if kind not in ("", "day_camp", "course"):
            raise FieldError("invalid_kind", "kind")
        now = self.clock_ms()
        async with reading(self.engine) as conn:
            event = await _event(conn, event_id)
            query = select(activities).where(activities.c.event_id == event_id)
            if parks:
                query = query.where(activities.c.park.in_(list(parks)))
            if age_groups:
                query = query.where(activities.c.age_group.in_(list(age_groups)))
            if kind:
                query = query.where(activities.c.kind == kind)
            order = (activities.c.park, activities.c.age_group, activities.c.starts_on)
            rows = [] if facets_only else (await conn.execute(query.order_by(*order))).all()
            found = await _activity_infos(conn, rows, now)
            all_parks = await _distinct(conn, activities.c.park, event_id)
            all_groups = await _distinct(conn, activities.c.age_group, event_id)
            return found, all_parks, all_groups, bool(event.payment_deferred)

    # -- the cart --------------------------------------------------------------------

    async def get_cart(self, session: Session) -> CartSnapshot:
        """The session's cart; a payment lock past its time is settled first (FAQ 11)."""
        now = self.clock_ms()
        async with reading(self.engine) as conn:
            cart = (
                await conn.execute(select(carts).where(carts.c.id == session.cart_id))
            ).one_or_none()
        if cart is not None and cart.status == "paying" and (cart.locked_until_ms or 0) <= now:
            await self.settle(session.cart_id)
        return await self._fresh_snapshot(session)

    async def identify(self, session: Session, client_number: str, phone: str) -> CartSnapshot:
        """Identify the family (client number + principal phone) whose members take part."""
        family = await family_records.identify(self.engine, client_number, phone)
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            live = await _live_items(conn, cart, self.clock_ms())
            if cart.client_number not in (None, family.client_number) and live:
                raise Refused("other_family_in_cart", "client_number")
            await conn.execute(
                update(carts)
                .where(carts.c.id == cart.id)
                .values(client_number=family.client_number)
            )
        return await self._fresh_snapshot(session)

    async def add_member(
        self,
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
        today = day_of(self.clock_ms())
        if born > today or born.year < today.year - 120:
            raise FieldError("invalid_date", "birth_date")
        if relationship not in RELATIONSHIPS:
            raise FieldError("invalid_relationship", "relationship")
        if class_level is not None and not 0 <= class_level <= 12:
            raise FieldError("invalid_class_level", "class_level")
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            if cart.client_number is None:
                raise Refused("family_not_identified", "client_number")
            member_id = await _new_member_id(conn)
            await conn.execute(
                insert(members).values(
                    id=member_id,
                    client_number=cart.client_number,
                    first_name=first,
                    last_name=last,
                    birth_date=born,
                    relationship=relationship,
                    class_level=class_level,
                )
            )
            await self._touch(conn, cart)
        return await self._fresh_snapshot(session)

    async def add_items(
        self, session: Session, participant: str, activity_ids: Sequence[str]
    ) -> tuple[CartSnapshot, list[Outcome]]:
        """Put ``participant`` in each activity, holding a seat in each; a full one offers
        its waiting list, an ineligible one is refused with the reason."""
        wanted = list(dict.fromkeys(a.strip() for a in activity_ids if a.strip()))
        if not wanted:
            raise FieldError("required", "activity_ids")
        if len(wanted) > MAX_ITEMS_PER_CALL:
            raise FieldError("too_many", "activity_ids")
        now = self.clock_ms()
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            member = await _family_member(conn, cart, participant, "participant")
            results: dict[str, Outcome] = {}
            for activity_id in sorted(wanted):  # lock activities in one order: no deadlock
                results[activity_id] = await _hold(conn, cart, member, activity_id, now)
            if any(o.outcome == "held" for o in results.values()):
                await self._touch(conn, cart)
        snapshot = await self._fresh_snapshot(session)
        for outcome in results.values():
            CART_HOLDS.labels(session.event_id, outcome.outcome).inc()
        return snapshot, [results[a] for a in wanted]

    async def duplicate(
        self, session: Session, participant: str
    ) -> tuple[CartSnapshot, list[Outcome]]:
        """Put ``participant`` in every activity already chosen in the cart (Lévis step 3)."""
        now = self.clock_ms()
        async with reading(self.engine) as conn:
            cart = (
                await conn.execute(select(carts).where(carts.c.id == session.cart_id))
            ).one_or_none()
            lines = [] if cart is None else await _live_items(conn, cart, now)
        chosen = sorted({line.activity.id for line in lines})
        if not chosen:
            raise Refused("cart_empty")
        already = {line.activity.id for line in lines if line.participant == participant.strip()}
        targets = [a for a in chosen if a not in already]
        if not targets:
            raise Refused("already_in_every_activity", "participant")
        return await self.add_items(session, participant, targets)

    async def remove_item(
        self, session: Session, activity_id: str, participant: str
    ) -> CartSnapshot:
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            gone = await conn.execute(
                delete(cart_items).where(
                    cart_items.c.cart_id == cart.id,
                    cart_items.c.activity_id == activity_id,
                    cart_items.c.participant == participant,
                )
            )
            if not gone.rowcount:
                raise NotFound("not_in_cart")
            await self._touch(conn, cart)
        return await self._fresh_snapshot(session)

    async def extend(self, session: Session) -> CartSnapshot:
        """Twenty more minutes, once (Québec FAQ 8)."""
        now = self.clock_ms()
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            if not await _live_items(conn, cart, now):
                raise Refused("cart_empty")
            if cart.extension_used:
                raise Refused("extension_used")
            await conn.execute(
                update(carts)
                .where(carts.c.id == cart.id)
                .values(
                    hold_expires_at_ms=cart.hold_expires_at_ms + self.hold_ms,
                    extension_used=True,
                )
            )
        snapshot = await self._fresh_snapshot(session)
        CART_EXTENSIONS.labels(session.event_id).inc()
        return snapshot

    async def join_waiting_list(
        self, session: Session, activity_id: str, participant: str
    ) -> tuple[int, int]:
        """Put a participant on a full activity's waiting list: (position, joined at ms)."""
        now = self.clock_ms()
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            member = await _family_member(conn, cart, participant, "participant")
            act = await _locked_activity(conn, session.event_id, activity_id)
            if act is None:
                raise NotFound("unknown_activity", "activity_id")
            refusal = _ineligible(act, member) or await _registered(conn, activity_id, member.id)
            if refusal is not None:
                raise Refused(refusal[0], "participant", detail=refusal[1])
            if await _taken(conn, activity_id, now) < act.capacity:
                raise Refused("places_left", "activity_id")
            mine = (
                await conn.execute(
                    select(waiting_list.c.id, waiting_list.c.joined_at_ms).where(
                        waiting_list.c.activity_id == activity_id,
                        waiting_list.c.participant == member.id,
                    )
                )
            ).one_or_none()
            if mine is None:
                await conn.execute(
                    insert(waiting_list).values(
                        activity_id=activity_id,
                        participant=member.id,
                        client_number=cart.client_number,
                        joined_at_ms=now,
                    )
                )
                mine = (
                    await conn.execute(
                        select(waiting_list.c.id, waiting_list.c.joined_at_ms).where(
                            waiting_list.c.activity_id == activity_id,
                            waiting_list.c.participant == member.id,
                        )
                    )
                ).one()
            position = (
                await conn.execute(
                    select(func.count()).where(
                        waiting_list.c.activity_id == activity_id, waiting_list.c.id <= mine.id
                    )
                )
            ).scalar_one()
            return int(position), int(mine.joined_at_ms)

    async def set_payer(
        self, session: Session, member_id: str, client_number: str, phone: str, email: str
    ) -> CartSnapshot:
        """Confirm the payer (Lévis step 4): one of the identified family's adults; the
        family's responsible person when the cart holds childcare (Relevé 24)."""
        address = family_records.normalize_email(email)
        family = await family_records.identify(self.engine, client_number, phone)
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            if cart.client_number is None:
                raise Refused("family_not_identified", "client_number")
            if family.client_number != cart.client_number:
                raise Refused("payer_other_family", "client_number")
            payer = family.member(member_id.strip())
            if payer is None:
                raise FieldError("unknown_member", "member")
            await _check_payer(conn, cart, payer, self.clock_ms())
            await conn.execute(
                update(carts)
                .where(carts.c.id == cart.id)
                .values(payer_member=payer.id, payer_email=address)
            )
            await self._touch(conn, cart)
        return await self._fresh_snapshot(session)

    async def accept_conditions(self, session: Session, accepted: bool) -> CartSnapshot:
        """Step 5: nothing proceeds to payment without it."""
        if not accepted:
            raise FieldError("must_accept", "accepted")
        async with writing(self.engine) as conn:
            cart = await self._open_cart(conn, session)
            await conn.execute(
                update(carts)
                .where(carts.c.id == cart.id)
                .values(conditions_accepted_at_ms=self.clock_ms())
            )
            await self._touch(conn, cart)
        return await self._fresh_snapshot(session)

    # -- checkout --------------------------------------------------------------------

    async def checkout(self, session: Session, key: str, card: CardInput) -> CheckoutResult:
        """Lock the cart, charge once per ``key``, then confirm or unlock.

        A declined card leaves the cart as it was (its hold restarted). A provider that
        does not answer in time leaves the cart locked until ``settle`` learns the outcome:
        never a double charge, never a paid cart without its registrations.
        """
        key = key.strip()
        if not 8 <= len(key) <= 100:
            raise FieldError("invalid_idempotency_key", "idempotency_key")
        now = self.clock_ms()
        async with writing(self.engine) as conn:
            cart = await _cart_for_update(conn, session.cart_id)
            if (
                cart is not None
                and cart.payment_key == key
                and cart.status in ("paid", "confirmed")
            ):
                done = await _receipt(conn, cart)  # a double submit after success
                return CheckoutResult(cart.status, await _snapshot(conn, session, now), done)
            replay = cart is not None and cart.status == "paying" and cart.payment_key == key
            event = await _event(conn, session.event_id)
            receipt: Receipt | None = None
            if not replay:
                cart = await self._open_cart(conn, session)
                lines = await _live_items(conn, cart, now)
                total = await _check_ready(conn, cart, lines, now)
                if event.payment_deferred:
                    receipt = await self._confirm(conn, cart, key, None, total, now)
                else:
                    await conn.execute(
                        update(carts)
                        .where(carts.c.id == cart.id)
                        .values(
                            status="paying",
                            payment_key=key,
                            total_cents=total,
                            locked_until_ms=now + self.lock_ms,
                        )
                    )
            assert cart is not None
            total = int(cart.total_cents or 0) if replay else total
        if receipt is not None:  # payment deferred: confirmed without charging
            self.on_confirmed()
            CHECKOUTS.labels(session.event_id, "confirmed").inc()
            return CheckoutResult("confirmed", await self._fresh_snapshot(session), receipt)
        try:
            result = await self.payments.charge(
                key, session.cart_id, total, event.currency, card, event.title
            )
        except FieldError:
            await self._unlock(session.cart_id, key)  # a mistyped card: nothing was sent
            raise
        except PaymentUnreachable:
            result = PaymentResult("unknown")
        return await self._apply(session, key, result)

    async def settle(self, cart_id: str) -> None:
        """Settle a cart locked for payment: confirm it if the payment went through, unlock
        it if it did not, leave it locked (a while longer) if nobody knows yet."""
        async with reading(self.engine) as conn:
            cart = (await conn.execute(select(carts).where(carts.c.id == cart_id))).one_or_none()
        if cart is None or cart.status != "paying" or cart.payment_key is None:
            return
        try:
            result = await self.payments.lookup(cart.payment_key)
        except PaymentUnreachable:
            result = PaymentResult("unknown")
        if result is None:  # the charge never reached the adapter
            result = PaymentResult("not_sent")
        event_id, _, ticket_id = cart_id.partition("/")
        await self._apply(Session(event_id, ticket_id), cart.payment_key, result)

    async def settle_due(self) -> int:
        """Settle every cart whose payment lock has run out; returns how many were looked at."""
        now = self.clock_ms()
        async with reading(self.engine) as conn:
            due = (
                await conn.execute(
                    select(carts.c.id).where(
                        carts.c.status == "paying", carts.c.locked_until_ms <= now
                    )
                )
            ).scalars()
            ids = list(due)
        for cart_id in ids:
            await self.settle(cart_id)
        return len(ids)

    async def seat_levels(self) -> list[tuple[str, str, int, int, int]]:
        """(event, activity, capacity, places left, registered) of every activity."""
        now = self.clock_ms()
        async with reading(self.engine) as conn:
            rows = (
                await conn.execute(
                    select(activities.c.id, activities.c.event_id, activities.c.capacity)
                )
            ).all()
            taken = await _taken_counts(conn, [r.id for r in rows], now)
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
                max(0, r.capacity - taken[r.id]),
                int(registered.get(r.id, 0)),
            )
            for r in rows
        ]

    async def count_expired(self, since_ms: int, until_ms: int) -> None:
        """Count the holds that ran out in (since, until] with seats in them (metrics)."""
        async with reading(self.engine) as conn:
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

    async def receipt(self, cart_number: str, owner_number: str) -> Receipt:
        """Reprint a receipt from its two numbers (Québec FAQ 14)."""
        cart_number, owner_number = cart_number.strip(), owner_number.strip().upper()
        if not cart_number.isdigit() or len(cart_number) != 8:
            raise FieldError("invalid_cart_number", "cart_number")
        if not owner_number.isalnum() or len(owner_number) != 8:
            raise FieldError("invalid_owner_number", "owner_number")
        async with reading(self.engine) as conn:
            cart = (
                await conn.execute(select(carts).where(carts.c.cart_number == cart_number))
            ).one_or_none()
            if cart is None or not secrets.compare_digest(
                (cart.owner_number or "").encode(), owner_number.encode()
            ):
                raise NotFound("receipt_not_found")
            return await _receipt(conn, cart)

    # -- internals -------------------------------------------------------------------

    async def _fresh_snapshot(self, session: Session) -> CartSnapshot:
        """The cart as committed, read without the write lock (writers keep it short)."""
        async with reading(self.engine) as conn:
            return await _snapshot(conn, session, self.clock_ms())

    async def _apply(self, session: Session, key: str, result: PaymentResult) -> CheckoutResult:
        applied = await self._apply_result(session, key, result)
        CHECKOUTS.labels(session.event_id, applied.outcome).inc()
        return applied

    async def _apply_result(
        self, session: Session, key: str, result: PaymentResult
    ) -> CheckoutResult:
        now = self.clock_ms()
        if result.status == "approved":
            async with writing(self.engine) as conn:
                cart = await _cart_for_update(conn, session.cart_id)
                assert cart is not None
                if cart.status == "paying" and cart.payment_key == key:
                    total = int(cart.total_cents or 0)
                    receipt = await self._confirm(conn, cart, key, result, total, now)
                else:
                    receipt = await _receipt(conn, cart)
            self.on_confirmed()
            return CheckoutResult("paid", await self._fresh_snapshot(session), receipt)
        if result.status in ("declined", "not_sent"):
            await self._unlock(session.cart_id, key)
            reason = result.decline_reason or (
                "provider_busy" if result.status == "not_sent" else ""
            )
            snapshot = await self._fresh_snapshot(session)
            return CheckoutResult("declined", snapshot, decline_reason=reason)
        async with writing(self.engine) as conn:  # unknown: locked until settled
            await conn.execute(
                update(carts)
                .where(carts.c.id == session.cart_id, carts.c.status == "paying")
                .values(locked_until_ms=now + self.lock_ms)
            )
        return CheckoutResult("pending", await self._fresh_snapshot(session))

    async def _unlock(self, cart_id: str, key: str) -> None:
        """Back to the cart, as it was, its hold restarted (a change restarts the hold)."""
        async with writing(self.engine) as conn:
            await conn.execute(
                update(carts)
                .where(
                    carts.c.id == cart_id, carts.c.status == "paying", carts.c.payment_key == key
                )
                .values(
                    status="open",
                    payment_key=None,
                    locked_until_ms=None,
                    hold_expires_at_ms=self.clock_ms() + self.hold_ms,
                )
            )

    async def _confirm(
        self,
        conn: AsyncConnection,
        cart: Row[Any],
        key: str,
        payment: PaymentResult | None,
        total: int,
        now: int,
    ) -> Receipt:
        """Registrations, cart and owner numbers, the confirmation email: one transaction."""
        items = (
            await conn.execute(
                select(
                    cart_items.c.activity_id, cart_items.c.participant, cart_items.c.price_cents
                ).where(cart_items.c.cart_id == cart.id)
            )
        ).all()
        await conn.execute(
            insert(registrations),
            [
                {
                    "activity_id": item.activity_id,
                    "participant": item.participant,
                    "cart_id": cart.id,
                    "price_cents": item.price_cents,
                    "confirmed_at_ms": now,
                }
                for item in items
            ],
        )
        cart_number = await _new_cart_number(conn)
        await conn.execute(
            update(carts)
            .where(carts.c.id == cart.id)
            .values(
                status="paid" if payment is not None else "confirmed",
                payment_key=key,
                locked_until_ms=None,
                cart_number=cart_number,
                owner_number=_owner_number(),
                total_cents=total,
                paid_cents=total if payment is not None else 0,
                amount_due_cents=0 if payment is not None else total,
                card_brand=payment.brand if payment is not None else None,
                card_last4=payment.last4 if payment is not None else None,
                settled_at_ms=now,
            )
        )
        confirmed = (await conn.execute(select(carts).where(carts.c.id == cart.id))).one()
        receipt = await _receipt(conn, confirmed)
        await queue_confirmation(conn, cart.id, Confirmation(receipt), self.mail_from, now)
        return receipt

    async def _open_cart(self, conn: AsyncConnection, session: Session) -> Row[Any]:
        """The session's cart, created if new, locked for this transaction; refused if it is
        locked for a payment or already paid. An expired hold's items are dropped first."""
        now = self.clock_ms()
        event = await _event(conn, session.event_id)
        stmt = _insert_ignore(conn).values(
            id=session.cart_id,
            event_id=event.id,
            status="open",
            hold_expires_at_ms=0,
            extension_used=False,
            created_at_ms=now,
        )
        await conn.execute(stmt)
        cart = await _cart_for_update(conn, session.cart_id)
        assert cart is not None
        if cart.status == "paying":
            raise Refused("cart_locked", locked_until=str(cart.locked_until_ms or 0))
        if cart.status in ("paid", "confirmed"):
            raise Refused("cart_closed")
        if 0 < cart.hold_expires_at_ms <= now:
            await conn.execute(delete(cart_items).where(cart_items.c.cart_id == cart.id))
            await conn.execute(
                update(carts)
                .where(carts.c.id == cart.id)
                .values(hold_expires_at_ms=0, extension_used=False)
            )
            cart = await _cart_for_update(conn, session.cart_id)
            assert cart is not None
        return cart

    async def _touch(self, conn: AsyncConnection, cart: Row[Any]) -> None:
        """Every change restarts the hold (FAQ 8) when the cart holds something."""
        held = (
            await conn.execute(select(func.count()).where(cart_items.c.cart_id == cart.id))
        ).scalar_one()
        await conn.execute(
            update(carts)
            .where(carts.c.id == cart.id)
            .values(hold_expires_at_ms=self.clock_ms() + self.hold_ms if held else 0)
        )


# -- queries -----------------------------------------------------------------------------


def _insert_ignore(conn: AsyncConnection) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING into carts, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(carts).on_conflict_do_nothing(index_elements=["id"])
    return sqlite.insert(carts).on_conflict_do_nothing(index_elements=["id"])


async def _distinct(conn: AsyncConnection, column: Any, event_id: str) -> list[str]:
    """Every value of an activity column in the event, sorted (the search form's choices)."""
    query = select(column).where(activities.c.event_id == event_id).distinct().order_by(column)
    return list((await conn.execute(query)).scalars())


async def _event(conn: AsyncConnection, event_id: str) -> Row[Any]:
    event = (
        await conn.execute(select(registration_events).where(registration_events.c.id == event_id))
    ).one_or_none()
    if event is None:
        raise NotFound("unknown_event")
    return event


async def _cart_for_update(conn: AsyncConnection, cart_id: str) -> Row[Any] | None:
    return (
        await conn.execute(select(carts).where(carts.c.id == cart_id).with_for_update())
    ).one_or_none()


def _live(now: int) -> Any:
    """Carts whose items hold seats: open with a running hold, or locked for payment."""
    return or_(
        and_(carts.c.status == "open", carts.c.hold_expires_at_ms > now),
        carts.c.status == "paying",
    )


async def _taken(conn: AsyncConnection, activity_id: str, now: int) -> int:
    counts = await _taken_counts(conn, [activity_id], now)
    return counts.get(activity_id, 0)


async def _taken_counts(conn: AsyncConnection, ids: Iterable[str], now: int) -> dict[str, int]:
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
        .where(cart_items.c.activity_id.in_(wanted), _live(now))
        .group_by(cart_items.c.activity_id)
    )
    for query in (confirmed, held):
        for activity_id, n in (await conn.execute(query)).all():
            counts[activity_id] += int(n)
    return counts


async def _activity_infos(
    conn: AsyncConnection, rows: Sequence[Row[Any]], now: int
) -> list[ActivityInfo]:
    ids = [row.id for row in rows]
    taken = await _taken_counts(conn, ids, now)
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
            places_left=max(0, row.capacity - taken[row.id]),
            min_age=row.min_age,
            max_age=row.max_age,
            class_min=row.class_min,
            class_max=row.class_max,
            childcare=bool(row.childcare),
            waiting=waiting.get(row.id, 0),
        )
        for row in rows
    ]


async def _locked_activity(
    conn: AsyncConnection, event_id: str, activity_id: str
) -> Row[Any] | None:
    return (
        await conn.execute(
            select(activities)
            .where(activities.c.id == activity_id, activities.c.event_id == event_id)
            .with_for_update()
        )
    ).one_or_none()


def _ineligible(act: Row[Any], member: family_records.Member) -> tuple[str, str] | None:
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


async def _registered(
    conn: AsyncConnection, activity_id: str, participant: str
) -> tuple[str, str] | None:
    found = (
        await conn.execute(
            select(func.count()).where(
                registrations.c.activity_id == activity_id,
                registrations.c.participant == participant,
            )
        )
    ).scalar_one()
    return ("already_registered", "") if found else None


async def _hold(
    conn: AsyncConnection, cart: Row[Any], member: family_records.Member, activity_id: str, now: int
) -> Outcome:
    act = await _locked_activity(conn, cart.event_id, activity_id)
    if act is None:
        return Outcome(activity_id, "refused", "unknown_activity")
    refusal = _ineligible(act, member) or await _registered(conn, activity_id, member.id)
    if refusal is not None:
        return Outcome(activity_id, "refused", *refusal)
    holders = (
        await conn.execute(
            select(cart_items.c.cart_id)
            .select_from(cart_items.join(carts, carts.c.id == cart_items.c.cart_id))
            .where(
                cart_items.c.activity_id == activity_id,
                cart_items.c.participant == member.id,
                _live(now),
            )
        )
    ).scalars()
    holder = next(iter(holders), None)
    if holder == cart.id:
        return Outcome(activity_id, "refused", "already_in_cart")
    if holder is not None:
        return Outcome(activity_id, "refused", "already_in_another_cart")
    if await _taken(conn, activity_id, now) >= act.capacity:
        return Outcome(activity_id, "full")
    await conn.execute(
        insert(cart_items).values(
            cart_id=cart.id,
            activity_id=activity_id,
            participant=member.id,
            price_cents=act.price_cents,
        )
    )
    return Outcome(activity_id, "held")


async def _family_member(
    conn: AsyncConnection, cart: Row[Any], member_id: str, field_name: str
) -> family_records.Member:
    if cart.client_number is None:
        raise Refused("family_not_identified", "client_number")
    row = (
        await conn.execute(
            select(members).where(
                members.c.id == member_id.strip(), members.c.client_number == cart.client_number
            )
        )
    ).one_or_none()
    if row is None:
        raise FieldError("unknown_member", field_name)
    return family_records.member_of(row)


async def _lines(conn: AsyncConnection, cart_id: str, table: Any, now: int) -> list[Line]:
    rows = (
        await conn.execute(
            select(table.c.activity_id, table.c.participant, table.c.price_cents)
            .where(table.c.cart_id == cart_id)
            .order_by(table.c.id)
        )
    ).all()
    if not rows:
        return []
    ids = sorted({r.activity_id for r in rows})
    acts = (await conn.execute(select(activities).where(activities.c.id.in_(ids)))).all()
    infos = {info.id: info for info in await _activity_infos(conn, acts, now)}
    people = {
        p.id: f"{p.first_name} {p.last_name}"
        for p in (
            await conn.execute(
                select(members).where(members.c.id.in_(sorted({r.participant for r in rows})))
            )
        ).all()
    }
    return [
        Line(infos[r.activity_id], r.participant, people.get(r.participant, ""), r.price_cents)
        for r in rows
    ]


async def _live_items(conn: AsyncConnection, cart: Row[Any], now: int) -> list[Line]:
    if cart.status == "open" and cart.hold_expires_at_ms <= now:
        return []
    return await _lines(conn, cart.id, cart_items, now)


async def _payer_of(conn: AsyncConnection, cart: Row[Any]) -> Payer | None:
    if cart.payer_member is None:
        return None
    row = (
        await conn.execute(select(members).where(members.c.id == cart.payer_member))
    ).one_or_none()
    if row is None:
        return None
    return Payer(row.id, f"{row.first_name} {row.last_name}", cart.payer_email or "")


async def _check_payer(
    conn: AsyncConnection, cart: Row[Any], payer: family_records.Member, now: int
) -> None:
    """FAQ 12-13: never a child; the responsible person for childcare (Relevé 24)."""
    if payer.relationship == "child":
        raise Refused("payer_is_child", "member")
    if payer.age_on(day_of(now)) < ADULT_AGE:
        raise Refused("payer_too_young", "member")
    lines = await _live_items(conn, cart, now)
    if any(line.activity.childcare for line in lines) and payer.relationship != "responsible":
        raise Refused("payer_must_be_responsible", "member")


async def _check_ready(conn: AsyncConnection, cart: Row[Any], lines: list[Line], now: int) -> int:
    """Everything checkout needs, checked again now; returns the total in cents."""
    if not lines:
        raise Refused("cart_empty")
    if cart.payer_member is None or cart.payer_email is None:
        raise Refused("payer_required", "member")
    if cart.conditions_accepted_at_ms is None:
        raise Refused("conditions_not_accepted", "accepted")
    row = (await conn.execute(select(members).where(members.c.id == cart.payer_member))).one()
    await _check_payer(conn, cart, family_records.member_of(row), now)
    return sum(line.price_cents for line in lines)


async def _snapshot(conn: AsyncConnection, session: Session, now: int) -> CartSnapshot:
    event = await _event(conn, session.event_id)
    cart = (await conn.execute(select(carts).where(carts.c.id == session.cart_id))).one_or_none()
    if cart is None:
        return CartSnapshot(
            event.id, "open", 0, False, [], [], "", [], None, False, 0,
            event.currency, event.timezone, 0, "", bool(event.payment_deferred),
        )  # fmt: skip
    status, items, released = cart.status, [], []
    if cart.status in ("paid", "confirmed"):
        items = await _lines(conn, cart.id, registrations, now)
    else:
        items = await _lines(conn, cart.id, cart_items, now)
        if cart.status == "open" and 0 < cart.hold_expires_at_ms <= now:
            status, items, released = "expired", [], items
    people: list[family_records.Member] = []
    if cart.client_number is not None:
        rows = (
            await conn.execute(
                select(members)
                .where(members.c.client_number == cart.client_number)
                .order_by(members.c.birth_date)
            )
        ).all()
        people = [family_records.member_of(row) for row in rows]
    return CartSnapshot(
        event_id=event.id,
        status=status,
        hold_expires_at_ms=cart.hold_expires_at_ms if items and status == "open" else 0,
        extension_used=bool(cart.extension_used),
        items=items,
        released=released,
        client_number=cart.client_number or "",
        members=people,
        payer=await _payer_of(conn, cart),
        conditions_accepted=cart.conditions_accepted_at_ms is not None,
        total_cents=sum(line.price_cents for line in items),
        currency=event.currency,
        timezone=event.timezone,
        locked_until_ms=(cart.locked_until_ms or 0) if status == "paying" else 0,
        cart_number=cart.cart_number or "",
        payment_deferred=bool(event.payment_deferred),
    )


async def _receipt(conn: AsyncConnection, cart: Row[Any]) -> Receipt:
    event = await _event(conn, cart.event_id)
    lines = await _lines(conn, cart.id, registrations, cart.settled_at_ms or 0)
    payer = await _payer_of(conn, cart)
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
        payment_status="paid" if cart.status == "paid" else "deferred",
    )


async def _new_cart_number(conn: AsyncConnection) -> str:
    while True:
        number = f"{secrets.randbelow(90_000_000) + 10_000_000}"
        taken = (
            await conn.execute(select(func.count()).where(carts.c.cart_number == number))
        ).scalar_one()
        if not taken:
            return number


_OWNER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off paper


def _owner_number() -> str:
    return "".join(secrets.choice(_OWNER_ALPHABET) for _ in range(8))


async def _new_member_id(conn: AsyncConnection) -> str:
    while True:
        member_id = f"P{secrets.randbelow(9_000_000) + 1_000_000}"
        taken = (
            await conn.execute(select(func.count()).where(members.c.id == member_id))
        ).scalar_one()
        if not taken:
            return member_id


def _parse_date(text: str, field_name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise FieldError("invalid_date", field_name) from None


def day_of(ms: int) -> date:
    """The UTC date at ``ms``."""
    return datetime.fromtimestamp(ms / 1000, UTC).date()
