"""On PostgreSQL a cart call first looks, without locks or counts, at what the child
may ask for, then locks those activities and takes their free seats in one statement
(``seats.take_seats``). These tests put another family's change between the first look
and the lock, where the locks leave room for it, and check that the answer and the
seats come from the count under the lock.
PostgreSQL only: on SQLite the transaction holds the write lock from its first
statement, so nothing can come between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from cart_service import catalogue, family_rules, holds, seats
from cart_service.desk import Desk
from cart_service.ledger import create_schema
from cart_service.model import CartSnapshot, Session
from tests.registration import load_catalogue
from tests.support.desk import NOW, add_families, make_desk
from tests.support.postgres import drop, fresh_database
from waitroom.db import make_engine

FIRST, SECOND = Session("camp", "first"), Session("camp", "second")

Lock = Callable[[AsyncConnection, str, Sequence[str]], Awaitable[None]]


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    url = await fresh_database()
    engine = make_engine(url, pool_size=5, max_overflow=0)
    try:
        await create_schema(engine)
        await load_catalogue(engine)
        await add_families(engine, 2)
        desk = make_desk(engine)
        await family_rules.identify(desk, FIRST, "900000", "418 555-0000")
        yield desk
    finally:
        await engine.dispose()
        await drop(url)


def before_the_lock(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[None]]
) -> None:
    """Run ``meanwhile`` (committed on its own connection) once, just before the next
    ``add_items`` locks its activities."""
    real: Lock = seats.lock_activities

    async def lock(conn: AsyncConnection, event_id: str, ids: Sequence[str]) -> None:
        monkeypatch.setattr(holds, "lock_activities", real)
        await meanwhile()
        await real(conn, event_id, ids)

    monkeypatch.setattr(holds, "lock_activities", lock)


async def places_left(desk: Desk, activity_id: str) -> int:
    found = await catalogue.search(desk, "camp", parks=["Parc A", "Parc B"], age_groups=["7-8 ans"])
    return next(a.places_left for a in found.activities if a.id == activity_id)


def ids(cart: CartSnapshot) -> list[str]:
    return [line.activity.id for line in cart.items]


async def test_the_last_seat_taken_after_the_first_look_is_full(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b78-w1 has one place: after the first look, another family takes it before the
    lock; the answer is "full", and the other week asked in the same call is held."""
    await family_rules.identify(desk, SECOND, "900001", "418 555-0001")

    async def other_family() -> None:
        _, outcomes = await holds.add_items(desk, SECOND, "K1", ["b78-w1"])
        assert [o.outcome for o in outcomes] == ["held"]

    before_the_lock(monkeypatch, other_family)
    cart, outcomes = await holds.add_items(desk, FIRST, "K0", ["b78-w1", "a78-w1"])
    assert [o.outcome for o in outcomes] == ["full", "held"]
    assert ids(cart) == ["a78-w1"]
    assert cart.hold_expires_at_ms == NOW + 60_000  # the one statement lengthened the hold
    assert await places_left(desk, "b78-w1") == 0
    assert await places_left(desk, "a78-w1") == 9


async def test_a_child_put_in_another_tab_s_cart_meanwhile_is_refused(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One family, two tabs, the same child and week: the tab that locks second finds the
    child in the other's live cart and is refused, as when the calls come one by one."""
    tab = Session("camp", "other-tab")
    await family_rules.identify(desk, tab, "900000", "418 555-0000")

    async def other_tab() -> None:
        _, outcomes = await holds.add_items(desk, tab, "K0", ["a78-w1"])
        assert [o.outcome for o in outcomes] == ["held"]

    before_the_lock(monkeypatch, other_tab)
    cart, outcomes = await holds.add_items(desk, FIRST, "K0", ["a78-w1"])
    assert [(o.outcome, o.code) for o in outcomes] == [("refused", "already_in_another_cart")]
    assert ids(cart) == [] and cart.hold_expires_at_ms == 0
    assert await places_left(desk, "a78-w1") == 9


async def test_a_seat_freed_between_the_take_and_the_recount_is_held(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one statement finds b78-w1 full (taken before the lock); before the recount the
    other family gives its line back (a removal locks no activity): the recount finds
    the place free and takes it, so the answer and the cart agree."""
    await family_rules.identify(desk, SECOND, "900001", "418 555-0001")

    real_take = seats.take_seats

    async def take_then_free(*args: object) -> set[str]:
        monkeypatch.setattr(holds, "take_seats", real_take)
        taken = await real_take(*args)  # type: ignore[arg-type]
        assert taken == set()
        await holds.remove_item(desk, SECOND, "b78-w1", "K1")
        return taken

    async def take() -> None:
        await holds.add_items(desk, SECOND, "K1", ["b78-w1"])
        monkeypatch.setattr(holds, "take_seats", take_then_free)

    before_the_lock(monkeypatch, take)
    cart, outcomes = await holds.add_items(desk, FIRST, "K0", ["b78-w1"])
    assert [o.outcome for o in outcomes] == ["held"]
    assert ids(cart) == ["b78-w1"] and cart.hold_expires_at_ms == NOW + 60_000
    assert await places_left(desk, "b78-w1") == 0
