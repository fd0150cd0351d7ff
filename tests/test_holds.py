"""Holds, called directly against the ledger (SQLite and PostgreSQL): what a change does
to the hold, the one extension, copying a participant, removing, waiting lists."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service import family_rules, holds
from cart_service.desk import Desk
from cart_service.model import Session
from tests.registration import load_catalogue
from tests.support.desk import NOW, add_families, clock_of, make_desk
from waitroom.validation import FieldError, NotFound, Refused

ROY = Session("camp", "roy")


@pytest.fixture
async def desk(ledger_engine: AsyncEngine) -> Desk:
    await load_catalogue(ledger_engine)
    await add_families(ledger_engine, 3)
    desk = make_desk(ledger_engine)
    await family_rules.identify(desk, ROY, "900000", "418 555-0000")
    return desk


async def test_a_hold_runs_from_the_last_change(desk: Desk) -> None:
    clock = clock_of(desk)
    cart, outcomes = await holds.add_items(desk, ROY, "K0", ["a78-w1"])
    assert [o.outcome for o in outcomes] == ["held"]
    assert cart.hold_expires_at_ms == NOW + 60_000
    clock.ms += 30_000
    cart, _ = await holds.add_items(desk, ROY, "K0", ["a78-w2"])
    assert cart.hold_expires_at_ms == NOW + 90_000
    assert [line.activity.id for line in cart.items] == ["a78-w1", "a78-w2"]


async def test_adding_again_what_the_cart_holds_is_held_once(desk: Desk) -> None:
    """The gateway sends AddItems again when a replica dies mid-call: the second try
    answers "held" for what the first one took, and takes nothing twice."""
    await holds.add_items(desk, ROY, "K0", ["a78-w1"])
    again, outcomes = await holds.add_items(desk, ROY, "K0", ["a78-w1", "a78-w2"])
    assert [o.outcome for o in outcomes] == ["held", "held"]
    assert [line.activity.id for line in again.items] == ["a78-w1", "a78-w2"]
    places = {line.activity.id: line.activity.places_left for line in again.items}
    assert places == {"a78-w1": 9, "a78-w2": 9}  # one seat each, not two


async def test_a_cart_line_counts_every_family_s_seats(desk: Desk) -> None:
    other = Session("camp", "other")
    await family_rules.identify(desk, other, "900001", "418 555-0001")
    await holds.add_items(desk, other, "K1", ["a78-w1"])
    cart, _ = await holds.add_items(desk, ROY, "K0", ["a78-w1", "a78-w2"])
    places = {line.activity.id: line.activity.places_left for line in cart.items}
    assert places == {"a78-w1": 8, "a78-w2": 9}  # capacity 10 each


async def test_the_hold_extends_once(desk: Desk) -> None:
    with pytest.raises(Refused) as caught:
        await holds.extend(desk, ROY)
    assert caught.value.code == "cart_empty"
    await holds.add_items(desk, ROY, "K0", ["a78-w1"])
    cart = await holds.extend(desk, ROY)
    assert cart.extension_used and cart.hold_expires_at_ms == NOW + 120_000
    with pytest.raises(Refused) as caught:
        await holds.extend(desk, ROY)
    assert caught.value.code == "extension_used"


async def test_a_change_after_the_extension_never_shortens_the_hold(desk: Desk) -> None:
    """Québec FAQ 8: "chaque modification viendra allonger la durée"."""
    clock = clock_of(desk)
    await holds.add_items(desk, ROY, "K0", ["a78-w1"])  # hold: NOW + 60 s (test hold)
    cart = await holds.extend(desk, ROY)
    assert cart.hold_expires_at_ms == NOW + 120_000
    clock.ms += 10_000
    cart, _ = await holds.add_items(desk, ROY, "K0", ["a78-w2"])
    assert cart.hold_expires_at_ms == NOW + 120_000  # not now + 60 s: the extension kept
    clock.ms += 80_000  # 30 s left: a change gives twenty "minutes" from now again
    cart = await holds.remove_item(desk, ROY, "a78-w2", "K0")
    assert cart.hold_expires_at_ms == NOW + 90_000 + 60_000


async def test_duplicate_copies_a_participant_to_every_chosen_week(desk: Desk) -> None:
    with pytest.raises(Refused) as caught:
        await holds.duplicate(desk, ROY, "K0")
    assert caught.value.code == "cart_empty"
    await holds.add_items(desk, ROY, "K0", ["a78-w1", "a78-w2"])
    with pytest.raises(Refused) as caught:
        await holds.duplicate(desk, ROY, "K0")
    assert caught.value.code == "already_in_every_activity"
    # The family's adult is too old for a 7-8 camp: refused with the accepted range.
    _, outcomes = await holds.duplicate(desk, ROY, "A0")
    assert [(o.outcome, o.code, o.detail) for o in outcomes] == [
        ("refused", "too_old", "7-8"),
        ("refused", "too_old", "7-8"),
    ]


async def test_eligibility_and_unknown_names(desk: Desk) -> None:
    _, outcomes = await holds.add_items(desk, ROY, "K0", ["a910-w1", "chess-1-2", "nope"])
    assert [(o.outcome, o.code) for o in outcomes] == [
        ("refused", "too_young"),
        ("held", ""),  # class level 2 fits a course for levels 1-2
        ("refused", "unknown_activity"),
    ]
    with pytest.raises(FieldError) as wrong:
        await holds.add_items(desk, ROY, "K1", ["a78-w1"])  # another family's child
    assert (wrong.value.code, wrong.value.field) == ("unknown_member", "participant")
    with pytest.raises(FieldError):
        await holds.add_items(desk, ROY, "K0", [" ", ""])


async def test_remove_gives_the_seat_back(desk: Desk) -> None:
    await holds.add_items(desk, ROY, "K0", ["b78-w1"])  # capacity 1
    other = Session("camp", "other")
    await family_rules.identify(desk, other, "900001", "418 555-0001")
    _, outcomes = await holds.add_items(desk, other, "K1", ["b78-w1"])
    assert outcomes[0].outcome == "full" and outcomes[0].waiting_list_offered
    cart = await holds.remove_item(desk, ROY, "b78-w1", "K0")
    assert cart.items == [] and cart.hold_expires_at_ms == 0
    with pytest.raises(NotFound):
        await holds.remove_item(desk, ROY, "b78-w1", "K0")
    _, outcomes = await holds.add_items(desk, other, "K1", ["b78-w1"])
    assert outcomes[0].outcome == "held"


async def test_waiting_list_positions_in_order_of_arrival(desk: Desk) -> None:
    await holds.add_items(desk, ROY, "K0", ["b78-w1"])
    with pytest.raises(Refused) as caught:
        await holds.join_waiting_list(desk, ROY, "a78-w1", "K0")
    assert caught.value.code == "places_left"
    positions = []
    for n in (1, 2):
        session = Session("camp", f"s{n}")
        await family_rules.identify(desk, session, f"90000{n}", f"418 555-000{n}")
        position, joined, _ = await holds.join_waiting_list(desk, session, "b78-w1", f"K{n}")
        positions.append(position)
        assert joined == NOW
    assert positions == [1, 2]
    again, *_ = await holds.join_waiting_list(desk, Session("camp", "s2"), "b78-w1", "K2")
    assert again == 2  # joining twice keeps the first place
