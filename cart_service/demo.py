"""A realistic demo catalogue and families, loaded by ``make run`` (and by the drill).

Lévis-like day camps: 20 parks, 4 age groups, 8 summer weeks, capacities 15-60,
childcare (a Relevé 24 is issued, so the responsible person pays); plus P'tit
Victor-style courses accepted by class level. The same seed gives the same catalogue.
Families have client numbers and principal phones to identify with (see ``FAMILIES``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import date, timedelta

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service.catalogue import load_catalogue
from cart_service.ledger import phases
from waitroom.db import make_engine, writing

PARKS = (
    "Parc Champagnat",
    "Parc de la Rivière-Etchemin",
    "Parc des Chutes-de-la-Chaudière",
    "Parc de l'Anse-Tibbits",
    "Parc Isidore-Lecours",
    "Parc Jean-Dumets",
    "Parc Renaud-Maillette",
    "Parc Ville-Guay",
    "Parc du Grand-Tronc",
    "Parc Lamartine",
    "Parc des Écoliers",
    "Parc Saint-Louis-de-Pintendre",
    "Parc de la Martinière",
    "Parc Roger-Vallières",
    "Parc des Érables",
    "Parc Saint-Romuald",
    "Parc de Breakeyville",
    "Parc Saint-Nicolas",
    "Parc Charny",
    "Parc Saint-Étienne",
)
# (label, min age, max age) on the first day of the week.
AGE_GROUPS = (("5-6 ans", 5, 6), ("7-8 ans", 7, 8), ("9-10 ans", 9, 10), ("11-12 ans", 11, 12))
FIRST_WEEK = date(2027, 6, 28)  # a Monday
WEEKS = 8
# P'tit Victor-style courses: (title, lowest class level, highest); 0 = kindergarten.
COURSES = (
    ("Théâtre — maternelle", 0, 0),
    ("Échecs — 1re et 2e année", 1, 2),
    ("Arts plastiques — 1re à 3e année", 1, 3),
    ("Robotique — 4e à 6e année", 4, 6),
    ("Judo — 3e à 6e année", 3, 6),
)
COURSE_WEEK = date(2027, 9, 13)
COURSE_PLACE = "École du P'tit Victor"


Person = tuple[str, str, date, str, int | None]  # id, first name, born, relationship, class


def _family(
    client: str,
    phone: str,
    email: str,
    last: str,
    people: list[Person],
    validated: bool = True,
    member: bool = False,
    preregistered: bool = False,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    return (
        {
            "client_number": client,
            "principal_phone": phone,
            "email": email,
            "validated": validated,
            "member": member,
            "preregistered": preregistered,
        },
        [
            {
                "id": pid,
                "client_number": client,
                "first_name": first,
                "last_name": last,
                "birth_date": born,
                "relationship": relationship,
                "class_level": level,
            }
            for pid, first, born, relationship, level in people
        ],
    )


# Demo families (client number, principal phone as stored in E.164).
FAMILIES = (
    _family(
        "100234",
        "+14188392002",
        "anne.roy@example.org",
        "Roy",
        [
            ("P100", "Anne", date(1986, 3, 2), "responsible", None),
            ("P101", "Marc", date(1984, 11, 20), "spouse", None),
            ("P102", "Léa", date(2019, 5, 14), "child", 2),
            ("P103", "Hugo", date(2017, 9, 3), "child", 4),
            ("P104", "Zoé", date(2022, 1, 9), "child", 0),
        ],
        member=True,  # P'tit Victor: a member family of the past season
    ),
    _family(
        "100871",
        "+14186416018",
        "famille.tremblay@example.org",
        "Tremblay",
        [
            ("P200", "Julie", date(1990, 7, 7), "responsible", None),
            ("P201", "Éric", date(1989, 2, 27), "other", None),
            ("P202", "Noah", date(2016, 4, 30), "child", 5),
            ("P203", "Emma", date(2020, 8, 18), "child", 1),
        ],
    ),
    _family(
        "101552",
        "+15818880001",
        "gagnon@example.org",
        "Gagnon",
        [
            ("P300", "Sophie", date(1982, 10, 1), "responsible", None),
            ("P301", "Olivier", date(2015, 12, 12), "child", 6),
            ("P302", "Alice", date(2018, 6, 6), "child", 3),
        ],
        preregistered=True,  # P'tit Victor: pre-registered a child
    ),
    # A new account the team has not validated yet: it sees the catalogue and its
    # family, but cannot book (P'tit Victor).
    _family(
        "102010",
        "+14188335544",
        "cote@example.org",
        "Côté",
        [
            ("P400", "Martin", date(1988, 4, 4), "responsible", None),
            ("P401", "Rose", date(2019, 2, 2), "child", 2),
        ],
        validated=False,
    ),
)


async def load_demo(engine: AsyncEngine, event_id: str = "demo", seed: int = 2027) -> bool:
    """Load the demo catalogue under ``event_id`` and the demo families, once; returns
    False when it was already there."""
    event = {
        "id": event_id,
        "title": "Camps de jour — été 2027",
        "currency": "CAD",
        "timezone": "America/Toronto",
        "payment_deferred": False,
    }
    return await load_catalogue(engine, event, demo_activities(event_id, seed), FAMILIES)


async def load_requests_demo(
    engine: AsyncEngine, event_id: str, now_ms: int, seed: int = 2027
) -> bool:
    """P'tit Victor's way beside the city's: the courses only, one child per order,
    orders "En attente" until the allocation, and three phases from ``now_ms``: members
    and pre-registered families for a day, then new families of kindergarten for a day,
    then everyone for five days. Once; returns False when it was already there."""
    event = {
        "id": event_id,
        "title": "Activités du P'tit Victor — 2027-2028",
        "currency": "CAD",
        "timezone": "America/Toronto",
        "payment_deferred": False,
        "one_child_per_order": True,
        "mode": "requests",
    }
    courses = [a for a in demo_activities(event_id, seed) if a["kind"] == "course"]
    if not await load_catalogue(engine, event, courses, FAMILIES):
        return False
    day = 24 * 3600 * 1000
    rows = [
        (1, "Adhérents et familles pré-inscrites", 0, 1, "priority", None, None),
        (2, "Nouvelles familles — maternelle", 1, 2, "new", 0, 0),
        (3, "Toutes les familles", 2, 7, "everyone", None, None),
    ]
    async with writing(engine) as conn:
        await conn.execute(
            insert(phases),
            [
                {"event_id": event_id, "rank": rank, "name": name,
                 "opens_at_ms": now_ms + start * day, "closes_at_ms": now_ms + end * day,
                 "families": who, "class_min": low, "class_max": high}
                for rank, name, start, end, who, low, high in rows
            ],
        )  # fmt: skip
    return True


def demo_activities(event_id: str, seed: int = 2027) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for p, park in enumerate(PARKS):
        for label, low, high in AGE_GROUPS:
            capacity = rng.randrange(15, 61)
            price = rng.randrange(95, 146, 5) * 100
            for w in range(WEEKS):
                start = FIRST_WEEK + timedelta(weeks=w)
                rows.append(
                    {
                        "id": f"{event_id}-p{p + 1:02d}-{low:02d}-w{w + 1}",
                        "event_id": event_id,
                        "kind": "day_camp",
                        "title": f"Camp de jour {park} — {label}, semaine {w + 1}",
                        "park": park,
                        "age_group": label,
                        "starts_on": start,
                        "ends_on": start + timedelta(days=4),
                        "price_cents": price,
                        "capacity": capacity,
                        "min_age": low,
                        "max_age": high,
                        "class_min": None,
                        "class_max": None,
                        "childcare": True,
                    }
                )
    for c, (title, low, high) in enumerate(COURSES):
        rows.append(
            {
                "id": f"{event_id}-cours-{c + 1}",
                "event_id": event_id,
                "kind": "course",
                "title": title,
                "park": COURSE_PLACE,
                "age_group": "maternelle" if high == 0 else "primaire",
                "starts_on": COURSE_WEEK,
                "ends_on": COURSE_WEEK + timedelta(days=4),
                "price_cents": rng.randrange(60, 121, 5) * 100,
                "capacity": rng.randrange(15, 25),
                "min_age": None,
                "max_age": None,
                "class_min": low,
                "class_max": high,
                "childcare": False,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python -m cart_service.demo --database URL --event ID``: load the demo, once."""
    parser = argparse.ArgumentParser(prog="python -m cart_service.demo", description=__doc__)
    parser.add_argument("--database", required=True, help="the ledger's SQLAlchemy URL")
    parser.add_argument("--event", default="demo")
    parser.add_argument(
        "--requests", action="store_true", help="P'tit Victor's way: orders and an allocation"
    )
    args = parser.parse_args(argv)

    async def load() -> bool:
        engine = make_engine(args.database)
        try:
            if args.requests:
                return await load_requests_demo(engine, args.event, int(time.time() * 1000))
            return await load_demo(engine, args.event)
        finally:
            await engine.dispose()

    if asyncio.run(load()):
        print(f"demo catalogue loaded for {args.event} ({args.database})", flush=True)


if __name__ == "__main__":
    main()
