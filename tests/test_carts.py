"""The cart domain on SQLite and PostgreSQL: never oversold, expiry without a sweeper."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service import catalogue, family_rules, holds, settlement
from cart_service.demo import demo_activities, load_demo
from cart_service.desk import Desk
from cart_service.model import Session
from tests.registration import load_catalogue
from tests.support.desk import add_families, clock_of, make_desk
from waitroom.validation import Refused


@pytest.fixture
async def desk(ledger_engine: AsyncEngine) -> Desk:
    await load_catalogue(ledger_engine)
    return make_desk(ledger_engine)


async def test_two_hundred_concurrent_adds_on_ten_places(desk: Desk) -> None:
    await add_families(desk.engine, 200)
    sessions = [Session("camp", f"ticket-{i}") for i in range(200)]
    for i, session in enumerate(sessions):
        await family_rules.identify(desk, session, f"9{i:05d}", f"418 555-{i:04d}")

    async def add(i: int) -> str:
        _, outcomes = await holds.add_items(desk, sessions[i], f"K{i}", ["a78-w1"])
        return outcomes[0].outcome

    results = await asyncio.gather(*(add(i) for i in range(200)))
    assert results.count("held") == 10 and results.count("full") == 190
    found = await catalogue.search(desk, "camp", parks=["Parc A"], age_groups=["7-8 ans"])
    assert next(a for a in found.activities if a.id == "a78-w1").places_left == 0


async def test_an_expired_hold_frees_its_seat_with_no_sweeper(desk: Desk) -> None:
    clock = clock_of(desk)
    await add_families(desk.engine, 2)
    first, second = Session("camp", "t1"), Session("camp", "t2")
    await family_rules.identify(desk, first, "900000", "4185550000")
    await family_rules.identify(desk, second, "900001", "4185550001")
    _, outcomes = await holds.add_items(desk, first, "K0", ["b78-w1"])
    assert outcomes[0].outcome == "held"
    _, outcomes = await holds.add_items(desk, second, "K1", ["b78-w1"])
    assert outcomes[0].outcome == "full"
    clock.ms += 60_000  # exactly at expiry: the seat is free
    cart = await settlement.get_cart(desk, first)
    assert cart.status == "expired" and [line.activity.id for line in cart.released] == ["b78-w1"]
    _, outcomes = await holds.add_items(desk, second, "K1", ["b78-w1"])
    assert outcomes[0].outcome == "held"
    with pytest.raises(Refused) as caught:
        await holds.extend(desk, first)
    assert caught.value.code == "cart_empty"


async def test_one_participant_is_in_one_live_cart_per_activity(desk: Desk) -> None:
    await add_families(desk.engine, 1)
    tab_a, tab_b = Session("camp", "tab-a"), Session("camp", "tab-b")
    for tab in (tab_a, tab_b):
        await family_rules.identify(desk, tab, "900000", "418-555-0000")
    _, outcomes = await holds.add_items(desk, tab_a, "K0", ["a78-w1"])
    assert outcomes[0].outcome == "held"
    _, outcomes = await holds.add_items(desk, tab_b, "K0", ["a78-w1"])
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
    found = await catalogue.search(make_desk(ledger_engine), "demo", parks=["Parc Champagnat"])
    assert "Parc Champagnat" in found.parks and len(found.age_groups) == 6
    assert not found.payment_deferred
    assert len(found.activities) == 4 * 8
    assert all(a.places_left == a.capacity for a in found.activities)
