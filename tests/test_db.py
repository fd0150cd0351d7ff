"""The services' SQL engines: SQLite statements run on the event loop's thread (no hop
to aiosqlite's), transactions still commit and roll back, and a file is required; plain
URLs get the async drivers; on PostgreSQL a seat lock never blocks a foreign-key check."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from cart_service.ledger import carts, create_schema, registrations
from cart_service.seats import lock_activities
from tests.registration import load_catalogue
from tests.support.desk import add_families
from tests.support.postgres import drop, fresh_database
from waitroom.db import async_url, make_engine, reading, writing


async def test_sqlite_statements_run_on_the_loop_thread(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _thread_function(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("thread_id", 0, threading.get_ident)

    try:
        async with writing(engine) as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            ran_on = (await conn.execute(text("SELECT thread_id()"))).scalar_one()
        assert ran_on == threading.get_ident()
        with pytest.raises(RuntimeError):
            async with writing(engine) as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))
                raise RuntimeError("rolled back")
        async with reading(engine) as conn:
            assert (await conn.execute(text("SELECT sum(n) FROM t"))).scalar_one() == 1
    finally:
        await engine.dispose()


def test_an_sqlite_ledger_is_a_file() -> None:
    with pytest.raises(ValueError):
        make_engine("sqlite+aiosqlite:///:memory:")


def test_plain_urls_get_the_async_drivers() -> None:
    assert async_url("postgresql://u@h:5432/db") == "postgresql+asyncpg://u@h:5432/db"
    assert async_url("postgres://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"


async def test_a_seat_lock_lets_other_carts_reference_the_activity() -> None:
    """A transaction counting an activity's seats holds its row (``lock_activities``);
    another cart's settlement inserting a registration for it checks the foreign key
    (``FOR KEY SHARE``) and must not wait for it: waiting there, with the settlement's
    own locks held, is how two replicas deadlocked under load."""
    url = await fresh_database()
    engine = make_engine(url)
    try:
        await create_schema(engine)
        await load_catalogue(engine)
        await add_families(engine, 1)
        async with engine.begin() as conn:
            await conn.execute(
                insert(carts).values(
                    id="c1", event_id="camp", status="paying", hold_expires_at_ms=0,
                    extension_used=False, created_at_ms=0,
                )
            )  # fmt: skip
        async with engine.connect() as counting, engine.connect() as settling:
            await counting.begin()
            await lock_activities(counting, "camp", ["a78-w1"])
            await settling.begin()
            registration = insert(registrations).values(
                activity_id="a78-w1", participant="K0", cart_id="c1", price_cents=1,
                confirmed_at_ms=0,
            )  # fmt: skip
            await asyncio.wait_for(settling.execute(registration), timeout=5)
            await settling.commit()
            await counting.rollback()
    finally:
        await engine.dispose()
        await drop(url)
