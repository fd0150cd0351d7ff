"""Card input: typed as people type it, refused with the field and reason (Québec FAQ 10)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from payment_adapter.cards import CardBrand, CardError, parse_card

NOW = datetime(2026, 5, 11, 19, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "brand"),
    [
        ("4111 1111 1111 1111", CardBrand.VISA),
        ("4111-1111-1111-1111", CardBrand.VISA),
        ("5555555555554444", CardBrand.MASTERCARD),
        ("2223 0031 2200 3222", CardBrand.MASTERCARD),
    ],
)
def test_accepted_cards(typed: str, brand: CardBrand) -> None:
    card = parse_card(typed, "12/27", " 123 ", NOW)
    assert card.brand is brand and card.number.isdigit() and card.cvv == "123"
    assert card.number not in repr(card) and card.last4 in repr(card)


@pytest.mark.parametrize(
    ("number", "expiry", "cvv", "code", "field"),
    [
        ("3782 822463 10005", "12/27", "123", "card_not_accepted", "number"),  # Amex
        ("6011111111111117", "12/27", "123", "card_not_accepted", "number"),  # Discover
        ("4111 1111 1111 1112", "12/27", "123", "invalid_number", "number"),  # Luhn
        ("4111 abcd 1111 1111", "12/27", "123", "invalid_number", "number"),
        ("4111111111111111", "04/26", "123", "card_expired", "expiry"),
        ("4111111111111111", "13/27", "123", "invalid_expiry", "expiry"),
        ("4111111111111111", "1227", "123", "invalid_expiry", "expiry"),
        ("4111111111111111", "12/27", "12", "invalid_cvv", "cvv"),
        ("4111111111111111", "12/27", "12a", "invalid_cvv", "cvv"),
    ],
)
def test_refusals_name_the_field(number: str, expiry: str, cvv: str, code: str, field: str) -> None:
    with pytest.raises(CardError) as caught:
        parse_card(number, expiry, cvv, NOW)
    assert (caught.value.code, caught.value.field) == (code, field)


def test_a_card_is_valid_through_its_expiry_month() -> None:
    assert parse_card("4111111111111111", "05/26", "123", NOW).exp_year == 2026
    assert parse_card("4111111111111111", "05/2026", "123", NOW).exp_month == 5
