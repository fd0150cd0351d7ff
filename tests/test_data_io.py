"""The season's data in and out (``waitroom import`` / ``waitroom export``): a catalogue
and family records imported from CSV with every bad line reported and nothing of it
written, a second import of the same file changing nothing; and after a night, the
registrations, rosters, waiting lists, payments and Relevé 24 data exported as CSV."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cart_service import exports, imports
from cart_service.ledger import activities, families, members
from tests.registration import ANNE, APPROVE, EVENT, LEA, ROY, Stack, idempotency_key
from tests.test_registration_api import stack  # noqa: F401 - the fixture
from waitroom.db import make_engine

ROOT = Path(__file__).resolve().parent.parent

CATALOGUE = """\
id,kind,title,park,age_group,starts_on,ends_on,price,capacity,min_age,max_age,class_min,class_max,childcare
w1,day_camp,Semaine 1,Parc A,7-8 ans,2027-06-28,2027-07-02,"125,00",20,7,8,,,oui
w2,day_camp,Semaine 2,Parc A,7-8 ans,2027-07-05,2027-07-09,125.00,20,7,8,,,oui
w3,bike,Vélo,Parc B,9-10 ans,2027-07-05,2027-07-09,80.00,12,9,10,,,non
w4,course,Peinture,École,1re-2e,2027-07-12,2027-07-11,60.00,10,,,1,2,non
ballet,course,Ballet,École,1re-2e,2027-07-12,2027-07-16,60.00,10,,,1,2,non
"""

FAMILIES = """\
client_number,principal_phone,email,validated,member_id,first_name,last_name,birth_date,relationship,class_level
200100,418 555-0100,b@example.org,oui,Q100,Ines,Bouchard,1987-05-01,responsible,
200100,418 555-0100,b@example.org,oui,Q101,Theo,Bouchard,2019-09-09,child,2
200200,pas un numéro,c@example.org,oui,Q200,Max,Caron,1990-01-01,responsible,
200300,418 555-0300,,non,Q300,Lou,Dion,2020-02-02,cousin,
200300,418 555-0300,,non,Q301,Ana,Dion,1991-03-03,responsible,
"""


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waitroom.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_catalogue_imports_with_a_report_and_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text(CATALOGUE, "utf-8")
    database = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    args = ["import", "catalogue", str(path), "--event", "ete", "--database", database]
    first = _run_cli(*args, "--title", "Été 2027")
    assert first.returncode == 1, first.stderr  # lines were rejected
    assert first.stdout.splitlines() == [
        "3 created, 0 updated, 0 unchanged, 2 rejected",
        "line 4: kind: Input should be 'day_camp' or 'course'",
        "line 5: ends_on: before starts_on",
    ]
    again = _run_cli(*args)
    assert again.stdout.splitlines()[0] == "0 created, 0 updated, 3 unchanged, 2 rejected"
    path.write_text(CATALOGUE.replace('"125,00",20', '"130,00",25'), "utf-8")
    changed = _run_cli(*args)
    assert changed.stdout.splitlines()[0] == "0 created, 1 updated, 2 unchanged, 2 rejected"

    async def read() -> list[Any]:
        engine = make_engine(database)
        try:
            async with engine.connect() as conn:
                query = select(activities.c.id, activities.c.price_cents, activities.c.capacity,
                               activities.c.childcare).order_by(activities.c.id)  # fmt: skip
                return [tuple(r) for r in (await conn.execute(query)).all()]
        finally:
            await engine.dispose()

    import asyncio

    assert asyncio.run(read()) == [
        ("ballet", 6000, 10, False), ("w1", 13000, 25, True), ("w2", 12500, 20, True),
    ]  # fmt: skip
    # This ledger has no payment tables: said so, not a traceback.
    payments = _run_cli("export", "payments", "--event", "ete", "--database", database)
    assert payments.returncode == 2 and "no payment tables" in payments.stderr, payments.stderr
    unknown = tmp_path / "bad.csv"
    unknown.write_text("id,kind,colour\nx,course,red\n", "utf-8")
    refused = _run_cli("import", "catalogue", str(unknown), "--event", "ete",
                       "--database", database)  # fmt: skip
    assert refused.returncode == 2 and "missing columns" in refused.stderr


async def test_families_import_line_by_line(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        report = await imports.import_families(engine, FAMILIES)
        assert report.lines() == [
            "3 created, 0 updated, 0 unchanged, 2 rejected",
            "line 4: principal_phone: not a phone number",
            "line 5: relationship: one of responsible, spouse, parent, other, child",
        ]
        again = await imports.import_families(engine, FAMILIES)
        assert again.lines()[0] == "0 created, 0 updated, 3 unchanged, 2 rejected"
        async with engine.connect() as conn:
            rows = (await conn.execute(select(families).order_by(families.c.client_number))).all()
            assert [(r.client_number, r.principal_phone, r.validated) for r in rows] == [
                ("200100", "+14185550100", True),
                ("200300", "+14185550300", False),  # its good line made it, not validated
            ]
            people = (await conn.execute(select(members.c.id).order_by(members.c.id))).all()
            assert [r.id for r in people] == ["Q100", "Q101", "Q301"]
    finally:
        await engine.dispose()


async def test_the_nights_data_comes_out_as_csv(stack: Stack) -> None:  # noqa: F811
    s = stack
    headers = await s.admitted()
    await s.call("POST", "/cart/family", headers, ROY)
    weeks = {"participant": LEA, "activity_ids": ["a78-w1", "a78-w2"]}
    await s.call("POST", "/cart/items", headers, weeks)
    payer = {**ROY, "member": ANNE, "email": "anne.roy@example.org"}
    await s.call("PUT", "/cart/payer", headers, payer)
    await s.call("PUT", "/cart/conditions", headers, {"accepted": True})
    card = {"number": APPROVE, "expiry": "12/30", "cvv": "123"}
    status, paid = await s.call(
        "POST", "/cart/checkout", {**headers, "Idempotency-Key": idempotency_key()}, {"card": card}
    )
    assert (status, paid["outcome"]) == (200, "paid"), paid
    number = paid["receipt"]["cart_number"]

    def table(kind: str, rows: exports.Rows) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(exports.to_csv(*rows))))

    registered = table("registrations", await exports.export(s.engine, "registrations", EVENT))
    lines = [
        (r["cart_number"], r["participant"], r["activity_id"], r["price"], r["payer"])
        for r in registered
    ]
    assert sorted(lines) == [
        (number, LEA, "a78-w1", "125.00", "Anne Roy"),
        (number, LEA, "a78-w2", "125.00", "Anne Roy"),
    ]
    roster = table("rosters", await exports.export(s.engine, "rosters", EVENT))
    assert {(r["activity_id"], r["first_name"], r["age_on_first_day"]) for r in roster} == {
        ("a78-w1", "Léa", "8"), ("a78-w2", "Léa", "8"),
    }  # fmt: skip
    releve = table("releve24", await exports.export(s.engine, "releve24", EVENT))
    assert [(r["payer"], r["child"], r["activities"], r["childcare_paid"]) for r in releve] == [
        (ANNE, LEA, "2", "250.00")
    ]
    waiting = table("waiting-lists", await exports.export(s.engine, "waiting-lists", EVENT))
    assert waiting == []
    from payment_adapter.exports import payments_rows

    header, rows = await payments_rows(s.engine, EVENT, "America/Toronto")
    charged = [dict(zip(header, r, strict=True)) for r in rows]
    assert [(c["status"], c["amount"], c["last4"]) for c in charged] == [
        ("approved", "250.00", "4242")
    ]
