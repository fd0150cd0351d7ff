"""Identifying a family by client number and principal phone, typed as people type it."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service.families import IdentityError, identify, normalize_phone
from cart_service.ledger import families, members


@pytest.mark.parametrize(
    "typed", ["418 839-2002", "(418)839-2002", "4188392002", "+1 418-839-2002"]
)
def test_phones_as_people_type_them(typed: str) -> None:
    assert normalize_phone(typed) == "+14188392002"


@pytest.mark.parametrize("typed", ["839-2002", "phone", "", "418 839-200"])
def test_bad_phones(typed: str) -> None:
    with pytest.raises(IdentityError) as caught:
        normalize_phone(typed)
    assert (caught.value.code, caught.value.field) == ("invalid_phone", "phone")


async def test_identify(ledger_engine: AsyncEngine) -> None:
    async with ledger_engine.begin() as conn:
        await conn.execute(
            insert(families).values(
                client_number="100234", principal_phone="+14188392002", email="p@example.org"
            )
        )
        await conn.execute(
            insert(members),
            [
                {
                    "id": "P1",
                    "client_number": "100234",
                    "first_name": "Anne",
                    "last_name": "Roy",
                    "birth_date": date(1985, 3, 2),
                    "relationship": "responsible",
                    "class_level": None,
                },
                {
                    "id": "P2",
                    "client_number": "100234",
                    "first_name": "Léa",
                    "last_name": "Roy",
                    "birth_date": date(2016, 8, 30),
                    "relationship": "child",
                    "class_level": 4,
                },
            ],
        )
    family = await identify(ledger_engine, " 100234 ", "(418)839-2002")
    assert [m.id for m in family.members] == ["P1", "P2"]
    lea = family.member("P2")
    assert lea is not None and lea.age_on(date(2026, 8, 29)) == 9
    assert lea.age_on(date(2026, 8, 30)) == 10
    for client, phone, code, field in [
        ("999999", "418 839-2002", "unknown_client", "client_number"),
        ("100234", "418 555-0199", "phone_mismatch", "phone"),
        ("100234", "nope", "invalid_phone", "phone"),
        ("10 02 34", "418 839-2002", "invalid_client_number", "client_number"),
    ]:
        with pytest.raises(IdentityError) as caught:
            await identify(ledger_engine, client, phone)
        assert (caught.value.code, caught.value.field) == (code, field)
