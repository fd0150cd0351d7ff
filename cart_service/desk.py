"""The registration desk: what every cart rule works with, and the steps they all share.

``Desk`` holds the ledger's engine, the payment port, the clock and the lengths of holds
and payment locks. Each rule module (``holds``, ``family_rules``, ``checkout``,
``settlement``, ``catalogue``) is plain functions taking the desk first, so a test calls
a rule directly against a real database.

Every change runs in one transaction that first opens the session's cart for change
(``open_cart``: created if new, its row locked), then locks the activities it touches in
id order (``seats.locked_activity``): two families can never both take the last seat,
and two transactions never wait on each other in a circle.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Row, bindparam, case, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.ledger import cart_items, carts
from cart_service.model import CartSnapshot, Session
from cart_service.payment_port import Payments
from cart_service.snapshots import DONE, event_row, live_items, read_snapshot, snapshot
from waitroom.db import writing
from waitroom.validation import Refused, Unauthenticated


@dataclass(slots=True)
class Desk:
    engine: AsyncEngine
    payments: Payments
    clock_ms: Callable[[], int]
    hold_ms: int = 20 * 60 * 1000
    lock_ms: int = 120 * 1000
    mail_from: str = "inscriptions@waitroom.invalid"
    public_url: str = "http://127.0.0.1:8080"  # the pages, for links in emails
    # Called after a confirmation commits (the service flushes its outbox then).
    on_confirmed: Callable[[], None] = field(default=lambda: None)

    async def snapshot(self, session: Session) -> CartSnapshot:
        """The session's cart as committed now."""
        return await read_snapshot(self.engine, session, self.clock_ms())


# Built once: every cart call runs them.
# FOR NO KEY UPDATE (see seats.lock_activities): inserting the cart's items checks their
# foreign key with FOR KEY SHARE, which must not wait on the cart's own lock holder.
_CART_FOR_UPDATE = (
    select(carts).where(carts.c.id == bindparam("cart_id")).with_for_update(key_share=True)
)
_UPDATE_CART = update(carts).where(carts.c.id == bindparam("cart_id"))
_TOUCH = _UPDATE_CART.values(
    hold_expires_at_ms=case(
        (
            exists().where(cart_items.c.cart_id == bindparam("cart_id")),
            # Typed as the column: untyped, PostgreSQL infers int4 from the ELSE 0, and
            # asyncpg then refuses a time in milliseconds.
            bindparam("expires", type_=carts.c.hold_expires_at_ms.type),
        ),
        else_=0,
    )
)

# A family's other open carts in the event (every IdentifyFamily looks for them).
_EARLIER_CARTS = (
    select(carts.c.id)
    .where(
        carts.c.event_id == bindparam("event_id"),
        carts.c.client_number == bindparam("client"),
        carts.c.id != bindparam("cart_id"),
        carts.c.status == "open",
        carts.c.hold_expires_at_ms > bindparam("now"),
    )
    .with_for_update()
)


async def cart_for_update(conn: AsyncConnection, cart_id: str) -> Row[Any] | None:
    """The cart's row, locked until the transaction ends (or None)."""
    return (await conn.execute(_CART_FOR_UPDATE, {"cart_id": cart_id})).one_or_none()


async def update_cart(conn: AsyncConnection, cart_id: str, **values: Any) -> None:
    """Set ``values`` (column=value) on the cart's row."""
    await conn.execute(_UPDATE_CART, {"cart_id": cart_id, **values})


@dataclass(slots=True)
class Change:
    """A change to a session's cart under way (``changing``): its connection, and once
    the block is done, the cart as the change left it."""

    conn: AsyncConnection
    _after: CartSnapshot | None = None

    @property
    def cart(self) -> CartSnapshot:
        assert self._after is not None, "read after the change's block"
        return self._after


@contextlib.asynccontextmanager
async def changing(desk: Desk, session: Session) -> AsyncIterator[Change]:
    """One write transaction changing the session's cart, and the cart it leaves.

    SQLite: the snapshot is read in the same transaction (one process, one writer,
    statements on the loop's thread: a second connection would only cost). PostgreSQL:
    read after the commit, so the rows the change locked (the activities every family
    wants) stay locked no longer than the change itself."""
    same_transaction = desk.engine.dialect.name == "sqlite"
    async with writing(desk.engine) as conn:
        change = Change(conn)
        yield change
        if same_transaction:
            change._after = await snapshot(conn, session, desk.clock_ms())
    if change._after is None:
        change._after = await desk.snapshot(session)


def _insert_ignore(conn: AsyncConnection) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING into carts, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(carts).on_conflict_do_nothing(index_elements=["id"])
    return sqlite.insert(carts).on_conflict_do_nothing(index_elements=["id"])


async def _new_cart(
    conn: AsyncConnection, session: Session, event_id: str, status: str, now: int
) -> None:
    """The session's cart row, empty, unless a concurrent call made it first."""
    await conn.execute(
        _insert_ignore(conn).values(
            id=session.cart_id,
            event_id=event_id,
            status=status,
            hold_expires_at_ms=0,
            extension_used=False,
            created_at_ms=now,
        )
    )


async def open_cart(desk: Desk, conn: AsyncConnection, session: Session) -> Row[Any]:
    """The session's cart, created if new, locked for this transaction; refused if it is
    locked for a payment or already paid. An expired hold's items are dropped first."""
    now = desk.clock_ms()
    event = await event_row(conn, session.event_id)
    cart = await cart_for_update(conn, session.cart_id)
    if cart is None:  # the session's first change (a concurrent first one may win: fine)
        await _new_cart(conn, session, event.id, "open", now)
        cart = await cart_for_update(conn, session.cart_id)
        assert cart is not None
    if cart.status == "ended":  # the parent left: the session is over here too
        raise Unauthenticated("session_ended")
    if cart.status == "paying":
        raise Refused("cart_locked", locked_until=str(cart.locked_until_ms or 0))
    if cart.status in DONE:
        raise Refused("cart_closed")
    if 0 < cart.hold_expires_at_ms <= now:
        await conn.execute(delete(cart_items).where(cart_items.c.cart_id == cart.id))
        await update_cart(conn, cart.id, hold_expires_at_ms=0, extension_used=False)
        cart = await cart_for_update(conn, session.cart_id)
        assert cart is not None
    return cart


async def adopt_earlier_carts(
    desk: Desk, conn: AsyncConnection, cart: Row[Any], client_number: str
) -> int:
    """The family's open carts of earlier sessions of this event, whose holds still run,
    handed to ``cart`` (this session's): a parent whose session ended (expired, closed
    tab, rejoined) finds their own seats again instead of their child refused as
    ``already_in_another_cart``. The seats move with their items (never freed in
    between); the hold keeps the later end and an extension once used; the earlier carts
    end (their session's token opens nothing there any more). A cart locked for a
    payment stays where it is. Returns how many items came over."""
    now = desk.clock_ms()
    earlier = (
        (
            await conn.execute(
                _EARLIER_CARTS,
                {
                    "event_id": cart.event_id,
                    "client": client_number,
                    "cart_id": cart.id,
                    "now": now,
                },
            )
        )
        .scalars()
        .all()
    )
    moved = 0
    for old_id in earlier:
        old = await cart_for_update(conn, old_id)
        if old is None or old.status != "open":
            continue
        held_here = {
            (row.activity_id, row.participant)
            for row in await conn.execute(
                select(cart_items.c.activity_id, cart_items.c.participant).where(
                    cart_items.c.cart_id == cart.id
                )
            )
        }
        for item in (
            await conn.execute(select(cart_items).where(cart_items.c.cart_id == old_id))
        ).all():
            if (item.activity_id, item.participant) in held_here:
                await conn.execute(delete(cart_items).where(cart_items.c.id == item.id))
                continue
            await conn.execute(
                update(cart_items).where(cart_items.c.id == item.id).values(cart_id=cart.id)
            )
            moved += 1
        await update_cart(
            conn,
            cart.id,
            hold_expires_at_ms=max(cart.hold_expires_at_ms, old.hold_expires_at_ms),
            extension_used=bool(cart.extension_used or old.extension_used),
        )
        await update_cart(conn, old_id, status="ended", hold_expires_at_ms=0)
        cart = await cart_for_update(conn, cart.id) or cart
    return moved


def lengthened_hold(desk: Desk, cart: Row[Any]) -> int:
    """Where a change moves the end of ``cart``'s hold (FAQ 8: "chaque modification
    viendra allonger la durée"): to twenty minutes from now at least, never shorter than
    it was (an extension's time is kept)."""
    return max(int(cart.hold_expires_at_ms), desk.clock_ms() + desk.hold_ms)


async def touch(desk: Desk, conn: AsyncConnection, cart: Row[Any]) -> None:
    """Every change lengthens the hold (``lengthened_hold``) when the cart holds
    something; an empty cart's hold ends."""
    await conn.execute(_TOUCH, {"cart_id": cart.id, "expires": lengthened_hold(desk, cart)})


def day_of(ms: int) -> date:
    """The UTC date at ``ms``."""
    return datetime.fromtimestamp(ms / 1000, UTC).date()


async def end_session(desk: Desk, session: Session) -> int:
    """The session ended without paying (the parent left the waiting room): its cart
    holds no seat from now on (a cart ``ended`` is not live, seats.py) and takes no more
    change, whatever replica or token asks. A cart locked for a payment is left to
    settle; a paid one is done. Returns how many items it gave back."""
    now = desk.clock_ms()
    async with writing(desk.engine) as conn:
        event = await event_row(conn, session.event_id)
        cart = await cart_for_update(conn, session.cart_id)
        if cart is None:  # left before any change: the cart is born ended
            await _new_cart(conn, session, event.id, "ended", now)
            return 0
        if cart.status != "open":
            return 0
        held = len(await live_items(conn, cart, now))
        await update_cart(conn, cart.id, status="ended", hold_expires_at_ms=0)
        return held
