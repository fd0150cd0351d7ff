"""Schema migrations (waitroom/migrate.py): the models and the revisions agree on SQLite
and PostgreSQL; a ledger made by the release before migrations is upgraded with its rows
kept; replicas starting at once migrate once; the services refuse nothing they made."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, select

from cart_service.ledger import LEDGER, carts, registrations
from payment_adapter.store import PAYMENTS, payments
from waitroom.db import make_engine
from waitroom.migrate import Schema, head_of, revision_of, upgrade

BEFORE = Path(__file__).resolve().parent / "support" / "ledger-before-migrations.sql"


def _differences(conn: Connection, schema: Schema) -> list[Any]:
    opts = {
        "compare_type": True,
        "version_table": schema.version_table,
        "include_name": schema.includes,  # the other schema's tables are not this one's
    }
    return list(compare_metadata(MigrationContext.configure(conn, opts=opts), schema.metadata))


async def test_models_and_migrations_agree(ledger_url: str) -> None:
    engine = make_engine(ledger_url)
    try:
        for schema in (LEDGER, PAYMENTS):
            await upgrade(engine, schema)
            assert await revision_of(engine, schema) == head_of(schema)
            async with engine.connect() as conn:
                assert await conn.run_sync(_differences, schema) == [], schema.name
        # A second upgrade (every start) changes nothing.
        await upgrade(engine, LEDGER)
        assert await revision_of(engine, LEDGER) == head_of(LEDGER)
    finally:
        await engine.dispose()


async def test_a_ledger_of_the_release_before_migrations_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as made:
        made.executescript(BEFORE.read_text("utf-8"))
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        assert await revision_of(engine, LEDGER) is None
        for schema in (LEDGER, PAYMENTS):
            await upgrade(engine, schema)
            assert await revision_of(engine, schema) == head_of(schema)
            async with engine.connect() as conn:
                assert await conn.run_sync(_differences, schema) == [], schema.name
        async with engine.connect() as conn:
            paid = (await conn.execute(select(carts.c.cart_number, carts.c.status))).all()
            assert [tuple(r) for r in paid] == [("12345678", "paid")]
            count = select(func.count()).select_from(registrations)
            assert (await conn.execute(count)).scalar_one() == 1
            status = select(payments.c.status, payments.c.amount_cents)
            assert [tuple(r) for r in (await conn.execute(status)).all()] == [("approved", 12500)]
    finally:
        await engine.dispose()


async def test_replicas_starting_at_once_migrate_once(ledger_url: str) -> None:
    engines = [make_engine(ledger_url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(engine, LEDGER) for engine in engines))
        assert await revision_of(engines[0], LEDGER) == head_of(LEDGER)
    finally:
        for engine in engines:
            await engine.dispose()
