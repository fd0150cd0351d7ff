"""The services' SQL engines: SQLite statements run on the event loop's thread (no hop
to aiosqlite's), transactions still commit and roll back, and a file is required."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from waitroom.db import make_engine, reading, writing


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
