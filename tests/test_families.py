"""Identifying a family by client number and principal phone, typed as people type it."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service.families import (
    IdentityError,
    identify,
    members_and_validated,
    members_of,
    normalize_phone,
)
from cart_service.families import validated as validated_of
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


def _member(id: str, client: str, born: date, relationship: str) -> dict[str, object]:
    return {
        "id": id,
        "client_number": client,
        "first_name": id,
        "last_name": "R",
        "birth_date": born,
        "relationship": relationship,
        "class_level": None,
    }


async def test_members_and_validated_agree_with_the_two_queries(ledger_engine: AsyncEngine) -> None:
    """A snapshot reads a family's members and its validated flag in one query: the same
    answer as the two queries, for a family with members (twins ordered by id), a family
    not validated yet, and a family with no member."""
    twins = date(2018, 5, 1)
    async with ledger_engine.begin() as conn:
        await conn.execute(
            insert(families),
            [
                {"client_number": "100001", "principal_phone": "+14188392002", "validated": True},
                {"client_number": "100002", "principal_phone": "+14188392003", "validated": False},
                {"client_number": "100003", "principal_phone": "+14188392004", "validated": True},
            ],
        )
        await conn.execute(
            insert(members),
            [
                _member("T2", "100001", twins, "child"),
                _member("T1", "100001", twins, "child"),
                _member("M1", "100001", date(1980, 1, 1), "responsible"),
                _member("N1", "100002", date(1982, 1, 1), "responsible"),
            ],
        )
    async with ledger_engine.connect() as conn:
        for client, ids, ok in [
            ("100001", ["M1", "T1", "T2"], True),
            ("100002", ["N1"], False),
            ("100003", [], True),
            ("999999", [], False),
        ]:
            people, validated = await members_and_validated(conn, client)
            assert ([m.id for m in people], validated) == (ids, ok), client
            assert people == await members_of(conn, client)
            assert validated == await validated_of(conn, client)
