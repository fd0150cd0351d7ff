"""Family records and identification: client number plus principal phone (Lévis step 3).

Phones are accepted as people type them — ``418 839-2002``, ``(418)839-2002``,
``4188392002`` — and compared in E.164 (parsed by ``phonenumbers``, Canada by default).
Each refusal names the field that is wrong, so the page can put the message beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import email_validator
import phonenumbers
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.ledger import families, members
from waitroom.db import reading
from waitroom.validation import FieldError

DEFAULT_REGION = "CA"
_CLIENT_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")


class IdentityError(FieldError):
    """A family could not be identified from what was typed."""


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    first_name: str
    last_name: str
    birth_date: date
    relationship: str
    class_level: int | None
    pending_validation: bool = False  # added online, awaiting the office (FAQ 4)

    def age_on(self, day: date) -> int:
        """Age in whole years on ``day``."""
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years


@dataclass(frozen=True, slots=True)
class Family:
    client_number: str
    principal_phone: str
    email: str | None
    members: tuple[Member, ...]

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)


def member_of(row: Any) -> Member:
    """A Member from a ``members`` row."""
    return Member(
        row.id,
        row.first_name,
        row.last_name,
        row.birth_date,
        row.relationship,
        row.class_level,
        bool(row.pending_validation),
    )


def normalize_email(typed: str) -> str:
    """The address as ``email-validator`` normalises it; IdentityError ``invalid_email``."""
    try:
        return email_validator.validate_email(typed.strip(), check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        raise IdentityError("invalid_email", "email") from None


def normalize_phone(typed: str, region: str = DEFAULT_REGION) -> str:
    """E.164 form of a phone number as typed; IdentityError ``invalid_phone`` otherwise."""
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        raise IdentityError("invalid_phone", "phone") from None
    if not phonenumbers.is_valid_number(number):
        raise IdentityError("invalid_phone", "phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


async def identify(engine: AsyncEngine, client_number: str, phone: str) -> Family:
    """The family whose client number and principal phone these are."""
    client_number = client_number.strip()
    if not _CLIENT_NUMBER.match(client_number):
        raise IdentityError("invalid_client_number", "client_number")
    normalized = normalize_phone(phone)
    async with reading(engine) as conn:
        row = (await conn.execute(_FAMILY, {"client_number": client_number})).one_or_none()
        if row is None:
            raise IdentityError("unknown_client", "client_number")
        if row.principal_phone != normalized:
            raise IdentityError("phone_mismatch", "phone")
        people = await members_of(conn, client_number)
    return Family(row.client_number, row.principal_phone, row.email, tuple(people))


async def validated(conn: AsyncConnection, client_number: str) -> bool:
    """Whether the team validated the family's account (only then can it book)."""
    found = await conn.execute(_VALIDATED, {"client_number": client_number})
    return bool(found.scalar_one_or_none())


async def members_of(conn: AsyncConnection, client_number: str) -> list[Member]:
    """The members of a family, eldest first."""
    rows = (await conn.execute(_MEMBERS, {"client_number": client_number})).all()
    return [member_of(row) for row in rows]


async def members_and_validated(
    conn: AsyncConnection, client_number: str
) -> tuple[list[Member], bool]:
    """``members_of`` and ``validated`` in one query (every cart snapshot needs both)."""
    rows = (await conn.execute(_MEMBERS_VALIDATED, {"client_number": client_number})).all()
    people = [member_of(row) for row in rows if row.id is not None]
    return people, bool(rows) and bool(rows[0].family_validated)


_FAMILY = select(families).where(families.c.client_number == bindparam("client_number"))
_VALIDATED = select(families.c.validated).where(
    families.c.client_number == bindparam("client_number")
)
# One member by id (a cart's payer).
MEMBER = select(members).where(members.c.id == bindparam("member_id"))
_MEMBERS = (
    select(members)
    .where(members.c.client_number == bindparam("client_number"))
    .order_by(members.c.birth_date, members.c.id)  # twins: always in the same order
)
# From the family's row: one row with no member when it has none.
_MEMBERS_VALIDATED = (
    select(members, families.c.validated.label("family_validated"))
    .select_from(families.outerjoin(members, members.c.client_number == families.c.client_number))
    .where(families.c.client_number == bindparam("client_number"))
    .order_by(members.c.birth_date, members.c.id)  # twins: always in the same order
)
