"""The season's data in, from CSV (``waitroom import``): the catalogue of an event
(activities, capacities, prices, ages and class levels, childcare) and the family records
(one line per member).

Every line is checked on its own; a bad line is reported (its number, the column, why)
and nothing of it is written, while the good lines are written in one transaction. An
import is idempotent: a line whose record is already as it says changes nothing, so the
same file imported twice reports everything "unchanged" the second time. A capacity may
not go below the seats already sold.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.families import IdentityError, normalize_email, normalize_phone
from cart_service.family_rules import RELATIONSHIPS
from cart_service.ledger import (
    activities,
    create_schema,
    families,
    members,
    phases,
    registration_events,
    registrations,
)
from waitroom.db import writing

TRUE = {"1", "true", "yes", "oui", "o", "y", "vrai"}
FALSE = {"0", "false", "no", "non", "n", "faux", ""}


def _flag(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
    return value


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class ActivityLine(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["day_camp", "course"]
    title: str = Field(min_length=1, max_length=200)
    park: str = Field(min_length=1, max_length=120)
    age_group: str = Field(min_length=1, max_length=60)
    starts_on: date
    ends_on: date
    price: str  # dollars, "125.00" or "125,00"
    capacity: int = Field(ge=0, le=100_000)
    min_age: int | None = Field(None, ge=0, le=120)
    max_age: int | None = Field(None, ge=0, le=120)
    class_min: int | None = Field(None, ge=0, le=12)
    class_max: int | None = Field(None, ge=0, le=12)
    childcare: bool = False

    _none = field_validator("min_age", "max_age", "class_min", "class_max", mode="before")(
        _blank_is_none
    )
    _bool = field_validator("childcare", mode="before")(_flag)

    def price_cents(self) -> int:
        try:
            amount = Decimal(self.price.replace(",", ".").replace("$", "").strip())
        except InvalidOperation:
            raise _LineError("price", "not an amount (125.00)") from None
        if amount < 0 or amount != amount.quantize(Decimal("0.01")):
            raise _LineError("price", "a positive amount in dollars and cents")
        return int(amount * 100)

    def row(self, event_id: str) -> dict[str, object]:
        if self.ends_on < self.starts_on:
            raise _LineError("ends_on", "before starts_on")
        for low, high in (("min_age", "max_age"), ("class_min", "class_max")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise _LineError(high, f"below {low}")
        return {
            "id": self.id, "event_id": event_id, "kind": self.kind, "title": self.title,
            "park": self.park, "age_group": self.age_group, "starts_on": self.starts_on,
            "ends_on": self.ends_on, "price_cents": self.price_cents(),
            "capacity": self.capacity, "min_age": self.min_age, "max_age": self.max_age,
            "class_min": self.class_min, "class_max": self.class_max,
            "childcare": self.childcare,
        }  # fmt: skip


class MemberLine(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    client_number: str = Field(pattern=r"^[0-9A-Za-z]{1,32}$")
    principal_phone: str = Field(min_length=1, max_length=40)
    email: str = ""
    validated: bool = True
    # P'tit Victor's priority: a member of the past season, a pre-registered family.
    member: bool = False
    preregistered: bool = False
    member_id: str = Field(pattern=r"^[0-9A-Za-z]{1,32}$")
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    birth_date: date
    relationship: str
    class_level: int | None = Field(None, ge=0, le=12)

    _none = field_validator("class_level", mode="before")(_blank_is_none)
    _bool = field_validator("validated", "member", "preregistered", mode="before")(_flag)

    def rows(self) -> tuple[dict[str, object], dict[str, object]]:
        if self.relationship not in RELATIONSHIPS:
            raise _LineError("relationship", f"one of {', '.join(RELATIONSHIPS)}")
        try:
            phone = normalize_phone(self.principal_phone)
        except IdentityError:
            raise _LineError("principal_phone", "not a phone number") from None
        try:
            email = normalize_email(self.email) if self.email else None
        except IdentityError:
            raise _LineError("email", "not an email address") from None
        family: dict[str, object] = {
            "client_number": self.client_number, "principal_phone": phone, "email": email,
            "validated": self.validated, "member": self.member,
            "preregistered": self.preregistered,
        }  # fmt: skip
        member = {
            "id": self.member_id, "client_number": self.client_number,
            "first_name": self.first_name, "last_name": self.last_name,
            "birth_date": self.birth_date, "relationship": self.relationship,
            "class_level": self.class_level, "pending_validation": False,
        }  # fmt: skip
        return family, member


class PhaseLine(BaseModel):
    """A phase of a "requests" event: who may order (``families``, and class levels when
    given), from ``opens_at`` until ``closes_at`` (ISO 8601 with its UTC offset)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rank: int = Field(ge=1, le=100)
    name: str = Field(min_length=1, max_length=64)
    opens_at: datetime
    closes_at: datetime
    families: Literal["priority", "new", "everyone"]
    class_min: int | None = Field(None, ge=0, le=12)
    class_max: int | None = Field(None, ge=0, le=12)

    _none = field_validator("class_min", "class_max", mode="before")(_blank_is_none)

    def row(self, event_id: str) -> dict[str, object]:
        for name in ("opens_at", "closes_at"):
            if getattr(self, name).utcoffset() is None:
                raise _LineError(name, "needs its UTC offset (2027-04-01T19:00:00-04:00)")
        if self.closes_at <= self.opens_at:
            raise _LineError("closes_at", "not after opens_at")
        low, high = self.class_min, self.class_max
        if low is not None and high is not None and low > high:
            raise _LineError("class_max", "below class_min")
        return {
            "event_id": event_id, "rank": self.rank, "name": self.name,
            "opens_at_ms": int(self.opens_at.timestamp() * 1000),
            "closes_at_ms": int(self.closes_at.timestamp() * 1000),
            "families": self.families, "class_min": self.class_min, "class_max": self.class_max,
        }  # fmt: skip


class _LineError(Exception):
    def __init__(self, column: str, why: str) -> None:
        super().__init__(f"{column}: {why}")
        self.column, self.why = column, why


@dataclass
class Rejected:
    line: int  # the file's line number (the header is line 1)
    column: str
    why: str


@dataclass
class Report:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def lines(self) -> list[str]:
        summary = (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.rejected)} rejected"
        )
        return [summary, *(f"line {r.line}: {r.column}: {r.why}" for r in self.rejected)]


class BadFile(ValueError):
    """The file itself cannot be imported (its header); the message says why."""


def _read(text: str, model: type[BaseModel]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = set(reader.fieldnames or [])
    known = set(model.model_fields)
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    if missing := sorted(required - columns):
        raise BadFile(f"missing columns: {', '.join(missing)}")
    if unknown := sorted(columns - known):
        raise BadFile(f"unknown columns: {', '.join(unknown)}")
    for number, raw in enumerate(reader, start=2):
        yield number, {k: v for k, v in raw.items() if k is not None and v is not None}


def _parse(number: int, raw: dict[str, str], model: type[BaseModel], report: Report) -> Any | None:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        column = ".".join(str(p) for p in first["loc"]) or "line"
        report.rejected.append(Rejected(number, column, first["msg"]))
        return None


async def _upsert(
    conn: AsyncConnection, table: Any, key: str, row: dict[str, object], report: Report
) -> None:
    current = (await conn.execute(select(table).where(table.c[key] == row[key]))).one_or_none()
    if current is None:
        await conn.execute(insert(table).values(**row))
        report.created += 1
    elif any(getattr(current, name) != value for name, value in row.items()):
        await conn.execute(update(table).where(table.c[key] == row[key]).values(**row))
        report.updated += 1
    else:
        report.unchanged += 1


async def import_catalogue(
    engine: AsyncEngine, event_id: str, text: str, title: str = ""
) -> Report:
    """The activities of ``event_id`` from CSV (the event is made when ``title`` is given
    and it does not exist yet)."""
    report = Report()
    await create_schema(engine)
    lines = list(_read(text, ActivityLine))
    async with writing(engine) as conn:
        event = await conn.execute(
            select(registration_events.c.id).where(registration_events.c.id == event_id)
        )
        if event.one_or_none() is None:
            if not title:
                raise BadFile(f"no event {event_id!r} in the ledger: give its title to make it")
            await conn.execute(
                insert(registration_events).values(
                    id=event_id, title=title, currency="CAD", timezone="America/Toronto",
                    payment_deferred=False,
                )
            )  # fmt: skip
        for number, raw in lines:
            line = _parse(number, raw, ActivityLine, report)
            if line is None:
                continue
            try:
                row = line.row(event_id)
                await _check_activity(conn, event_id, row)
            except _LineError as exc:
                report.rejected.append(Rejected(number, exc.column, exc.why))
                continue
            await _upsert(conn, activities, "id", row, report)
    return report


async def _check_activity(conn: AsyncConnection, event_id: str, row: dict[str, object]) -> None:
    found = (
        await conn.execute(select(activities.c.event_id).where(activities.c.id == row["id"]))
    ).one_or_none()
    if found is not None and found.event_id != event_id:
        raise _LineError("id", f"an activity of event {found.event_id}")
    sold = (
        await conn.execute(
            select(func.count())
            .select_from(registrations)
            .where(registrations.c.activity_id == row["id"])
        )
    ).scalar_one()
    capacity = row["capacity"]
    assert isinstance(capacity, int)
    if capacity < sold:
        raise _LineError("capacity", f"below the {sold} seats already sold")


async def import_families(engine: AsyncEngine, text: str) -> Report:
    """Family records from CSV, one line per member (the family's columns repeated)."""
    report = Report()
    await create_schema(engine)
    lines = list(_read(text, MemberLine))
    seen: dict[str, dict[str, object]] = {}
    async with writing(engine) as conn:
        for number, raw in lines:
            line = _parse(number, raw, MemberLine, report)
            if line is None:
                continue
            try:
                family, member = line.rows()
                earlier = seen.setdefault(str(family["client_number"]), family)
                if earlier != family:
                    raise _LineError("client_number", "its family's columns differ from above")
                await _check_member(conn, member)
            except _LineError as exc:
                report.rejected.append(Rejected(number, exc.column, exc.why))
                continue
            await _upsert(conn, families, "client_number", family, Report())  # members counted
            await _upsert(conn, members, "id", member, report)
    return report


async def _check_member(conn: AsyncConnection, member: dict[str, object]) -> None:
    found = (
        await conn.execute(select(members.c.client_number).where(members.c.id == member["id"]))
    ).one_or_none()
    if found is not None and found.client_number != member["client_number"]:
        raise _LineError("member_id", f"a member of family {found.client_number}")


async def import_phases(engine: AsyncEngine, event_id: str, text: str) -> Report:
    """The phases of ``event_id`` from CSV, by rank; the event then takes requests
    (P'tit Victor: orders "En attente" until the allocation)."""
    report = Report()
    await create_schema(engine)
    lines = list(_read(text, PhaseLine))
    async with writing(engine) as conn:
        event = await conn.execute(
            select(registration_events.c.id).where(registration_events.c.id == event_id)
        )
        if event.one_or_none() is None:
            raise BadFile(f"no event {event_id!r} in the ledger: import its catalogue first")
        for number, raw in lines:
            line = _parse(number, raw, PhaseLine, report)
            if line is None:
                continue
            try:
                row = line.row(event_id)
            except _LineError as exc:
                report.rejected.append(Rejected(number, exc.column, exc.why))
                continue
            current = (
                await conn.execute(
                    select(phases).where(
                        phases.c.event_id == event_id, phases.c.rank == row["rank"]
                    )
                )
            ).one_or_none()
            if current is None:
                await conn.execute(insert(phases).values(**row))
                report.created += 1
            elif any(getattr(current, name) != value for name, value in row.items()):
                await conn.execute(
                    update(phases)
                    .where(phases.c.event_id == event_id, phases.c.rank == row["rank"])
                    .values(**row)
                )
                report.updated += 1
            else:
                report.unchanged += 1
        if report.created or report.updated or report.unchanged:
            await conn.execute(
                update(registration_events)
                .where(registration_events.c.id == event_id)
                .values(mode="requests")
            )
    return report


IMPORTS: dict[str, Callable[..., Any]] = {
    "catalogue": import_catalogue,
    "families": import_families,
    "phases": import_phases,
}
