"""Seats are never oversold, on SQLite and on PostgreSQL, whatever the concurrency."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service import seats
from cart_service.ledger import activities

NOW = 1_800_000_000_000


@pytest.fixture
async def ledger(ledger_engine: AsyncEngine) -> AsyncEngine:
    async with ledger_engine.begin() as conn:
        await conn.execute(
            insert(activities),
            [
                {"id": "parc-a-w1", "title": "Parc A, week 1", "price_cents": 9500, "capacity": 10},
                {"id": "parc-b-w1", "title": "Parc B, week 1", "price_cents": 9500, "capacity": 1},
            ],
        )
    return ledger_engine


async def test_two_hundred_concurrent_holds_on_ten_places(ledger: AsyncEngine) -> None:
    async def attempt(n: int) -> bool:
        try:
            await seats.hold_seat(
                ledger,
                cart_id=f"cart-{n}",
                family=f"family-{n}",
                activity_id="parc-a-w1",
                participant=f"child-{n}",
                now_ms=NOW,
            )
        except seats.ActivityFull:
            return False
        return True

    results = await asyncio.gather(*(attempt(n) for n in range(200)))
    assert sum(results) == 10
    assert await seats.places_left(ledger, "parc-a-w1", NOW) == 0


async def test_an_expired_hold_frees_its_seat_without_a_sweeper(ledger: AsyncEngine) -> None:
    expires = await seats.hold_seat(
        ledger, cart_id="c1", family="f1", activity_id="parc-b-w1", participant="p1", now_ms=NOW
    )
    assert expires == NOW + seats.HOLD_MS
    with pytest.raises(seats.ActivityFull):
        await seats.hold_seat(
            ledger,
            cart_id="c2",
            family="f2",
            activity_id="parc-b-w1",
            participant="p2",
            now_ms=NOW + 1000,
        )
    later = expires + 1
    assert await seats.places_left(ledger, "parc-b-w1", later) == 1
    await seats.hold_seat(
        ledger, cart_id="c2", family="f2", activity_id="parc-b-w1", participant="p2", now_ms=later
    )
    with pytest.raises(seats.CartNotOpen):  # the first cart's hold ran out: it cannot pay
        await seats.confirm_cart(ledger, "c1", later)
    assert await seats.confirm_cart(ledger, "c2", later) == 1
    assert await seats.places_left(ledger, "parc-b-w1", later + 10**9) == 0  # confirmed: forever


async def test_registered_participants_and_bad_input(ledger: AsyncEngine) -> None:
    await seats.hold_seat(
        ledger, cart_id="c1", family="f1", activity_id="parc-a-w1", participant="p1", now_ms=NOW
    )
    with pytest.raises(seats.AlreadyInCart):
        await seats.hold_seat(
            ledger,
            cart_id="c1",
            family="f1",
            activity_id="parc-a-w1",
            participant="p1",
            now_ms=NOW + 1,
        )
    await seats.confirm_cart(ledger, "c1", NOW + 2)
    with pytest.raises(seats.AlreadyRegistered):  # told when adding, not at payment
        await seats.hold_seat(
            ledger,
            cart_id="c9",
            family="f1",
            activity_id="parc-a-w1",
            participant="p1",
            now_ms=NOW + 3,
        )
    with pytest.raises(seats.CartNotOpen):
        await seats.hold_seat(
            ledger,
            cart_id="c1",
            family="f1",
            activity_id="parc-a-w1",
            participant="p2",
            now_ms=NOW + 4,
        )
    with pytest.raises(seats.UnknownActivity):
        await seats.places_left(ledger, "nowhere", NOW)
    assert await seats.places_left(ledger, "parc-a-w1", NOW + 5) == 9
