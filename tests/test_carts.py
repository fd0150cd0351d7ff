"""The cart domain on SQLite and PostgreSQL: never oversold, expiry without a sweeper."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service.carts import CardInput, Ledger, PaymentResult, Session
from cart_service.demo import demo_activities, load_demo
from cart_service.ledger import families, members
from tests.registration import load_catalogue
from waitroom.validation import Refused

NOW = 1_800_000_000_000


class NoPayments:
    """These tests never reach checkout."""

    async def charge(
        self, key: str, cart_id: str, amount_cents: int, currency: str, card: CardInput, d: str
    ) -> PaymentResult:
        raise AssertionError("no payment expected")

    async def lookup(self, key: str) -> PaymentResult | None:
        raise AssertionError("no payment expected")


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
async def ledger(ledger_engine: AsyncEngine) -> Ledger:
    await load_catalogue(ledger_engine)
    return Ledger(ledger_engine, NoPayments(), Clock(), hold_ms=60_000)


async def _families(engine: AsyncEngine, n: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(families),
            [
                {"client_number": f"9{i:05d}", "principal_phone": f"+1418555{i:04d}"}
                for i in range(n)
            ],
        )
        await conn.execute(
            insert(members),
            [
                {
                    "id": f"K{i}",
                    "client_number": f"9{i:05d}",
                    "first_name": "Kid",
                    "last_name": str(i),
                    "birth_date": date(2019, 3, 1),
                    "relationship": "child",
                    "class_level": 2,
                }
                for i in range(n)
            ],
        )


async def test_two_hundred_concurrent_adds_on_ten_places(ledger: Ledger) -> None:
    await _families(ledger.engine, 200)
    sessions = [Session("camp", f"ticket-{i}") for i in range(200)]
    for i, session in enumerate(sessions):
        await ledger.identify(session, f"9{i:05d}", f"418 555-{i:04d}")

    async def add(i: int) -> str:
        _, outcomes = await ledger.add_items(sessions[i], f"K{i}", ["a78-w1"])
        return outcomes[0].outcome

    results = await asyncio.gather(*(add(i) for i in range(200)))
    assert results.count("held") == 10 and results.count("full") == 190
    found, *_ = await ledger.search("camp", parks=["Parc A"], age_groups=["7-8 ans"])
    assert next(a for a in found if a.id == "a78-w1").places_left == 0


async def test_an_expired_hold_frees_its_seat_with_no_sweeper(ledger: Ledger) -> None:
    clock = ledger.clock_ms
    assert isinstance(clock, Clock)
    await _families(ledger.engine, 2)
    first, second = Session("camp", "t1"), Session("camp", "t2")
    await ledger.identify(first, "900000", "4185550000")
    await ledger.identify(second, "900001", "4185550001")
    _, outcomes = await ledger.add_items(first, "K0", ["b78-w1"])
    assert outcomes[0].outcome == "held"
    _, outcomes = await ledger.add_items(second, "K1", ["b78-w1"])
    assert outcomes[0].outcome == "full"
    clock.ms += 60_000  # exactly at expiry: the seat is free
    cart = await ledger.get_cart(first)
    assert cart.status == "expired" and [line.activity.id for line in cart.released] == ["b78-w1"]
    _, outcomes = await ledger.add_items(second, "K1", ["b78-w1"])
    assert outcomes[0].outcome == "held"
    with pytest.raises(Refused) as caught:
        await ledger.extend(first)
    assert caught.value.code == "cart_empty"


async def test_one_participant_is_in_one_live_cart_per_activity(ledger: Ledger) -> None:
    await _families(ledger.engine, 1)
    tab_a, tab_b = Session("camp", "tab-a"), Session("camp", "tab-b")
    for tab in (tab_a, tab_b):
        await ledger.identify(tab, "900000", "418-555-0000")
    _, outcomes = await ledger.add_items(tab_a, "K0", ["a78-w1"])
    assert outcomes[0].outcome == "held"
    _, outcomes = await ledger.add_items(tab_b, "K0", ["a78-w1"])
    assert (outcomes[0].outcome, outcomes[0].code) == ("refused", "already_in_another_cart")


async def test_the_demo_catalogue_is_levis_like(ledger_engine: AsyncEngine) -> None:
    assert await load_demo(ledger_engine)
    assert not await load_demo(ledger_engine)  # once
    rows = demo_activities("demo")
    camps = [r for r in rows if r["kind"] == "day_camp"]
    assert len({r["park"] for r in camps}) == 20
    assert len({r["age_group"] for r in camps}) == 4
    assert len({r["starts_on"] for r in camps}) == 8
    capacities = [int(str(r["capacity"])) for r in camps]
    assert min(capacities) >= 15 and max(capacities) <= 60
    assert any(r["kind"] == "course" and r["class_min"] is not None for r in rows)
    ledger = Ledger(ledger_engine, NoPayments(), Clock())
    found, parks, groups, deferred = await ledger.search(
        "demo", parks=[parks_0 := "Parc Champagnat"]
    )
    assert parks_0 in parks and len(groups) == 6 and not deferred
    assert len(found) == 4 * 8 and all(a.places_left == a.capacity for a in found)
