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
from sqlalchemy.exc import IntegrityError

from cart_service.ledger import carts, create_schema, registrations
from cart_service.seats import lock_activities
from tests.registration import load_catalogue
from tests.support.desk import add_families
from tests.support.postgres import drop, fresh_database
from waitroom.db import _WriterLock, async_url, make_engine, reading, unreachable, writing


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


def _sqlite_counting_commits(tmp_path: Path, foreign_keys: bool = False) -> tuple[Any, list[int]]:
    """An SQLite engine with a table ``t`` (and ``child`` with a deferred foreign key), and
    a list that grows by one at each COMMIT."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
    if foreign_keys:
        event.listen(
            engine.sync_engine,
            "connect",
            lambda dbapi, _record: dbapi.execute("PRAGMA foreign_keys=ON"),
        )
    return engine, commits


async def _schema(engine: Any) -> None:
    async with writing(engine) as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        await conn.execute(
            text("CREATE TABLE child (n INTEGER REFERENCES t (n) DEFERRABLE INITIALLY DEFERRED)")
        )


async def _rows(engine: Any) -> list[int]:
    async with reading(engine) as conn:
        return [r[0] for r in (await conn.execute(text("SELECT n FROM t ORDER BY n"))).all()]


async def _insert(engine: Any, n: int, refuse: bool = False) -> int:
    async with writing(engine) as conn:
        await conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
        if refuse:
            raise ValueError(f"writer {n} refused")
    return n


async def test_sqlite_writers_in_line_share_one_commit(tmp_path: Path) -> None:
    """Twenty writers at once: every row is there when its writer returns, and one
    commit made them durable."""
    engine, commits = _sqlite_counting_commits(tmp_path)
    try:
        await _schema(engine)
        commits.clear()
        done = await asyncio.gather(*(_insert(engine, n) for n in range(20)))
        assert done == list(range(20))
        assert await _rows(engine) == list(range(20))
        assert len(commits) == 1, commits  # all twenty ran in the same turn of the loop
        # A writer alone commits at once: its row is readable as soon as it returns.
        await _insert(engine, 99)
        assert 99 in await _rows(engine)
    finally:
        await engine.dispose()


async def test_a_refused_writer_in_a_group_undoes_only_its_own_changes(tmp_path: Path) -> None:
    engine, commits = _sqlite_counting_commits(tmp_path)
    try:
        await _schema(engine)
        commits.clear()
        results = await asyncio.gather(
            *(_insert(engine, n, refuse=n == 3) for n in range(6)), return_exceptions=True
        )
        assert len(commits) == 1  # the refused block was one of the group
        assert isinstance(results[3], ValueError)
        assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
        assert await _rows(engine) == [0, 1, 2, 4, 5]
    finally:
        await engine.dispose()


async def test_a_failed_group_commit_fails_every_writer_of_the_group(tmp_path: Path) -> None:
    """A deferred foreign key is checked at COMMIT: one writer's orphan row makes the
    group's commit fail, and every writer of the group hears it (none was answered)."""
    engine, _ = _sqlite_counting_commits(tmp_path, foreign_keys=True)

    async def orphan() -> None:
        async with writing(engine) as conn:
            await conn.execute(text("INSERT INTO child VALUES (12345)"))

    try:
        await _schema(engine)
        results = await asyncio.gather(
            _insert(engine, 1), orphan(), _insert(engine, 2), return_exceptions=True
        )
        assert all(isinstance(r, IntegrityError) for r in results), results
        assert await _rows(engine) == []
        assert await _insert(engine, 3) == 3  # the next writer starts a fresh transaction
        assert await _rows(engine) == [3]
    finally:
        await engine.dispose()


async def test_a_writer_takes_the_free_lock_before_those_queued_wake() -> None:
    """No convoy: once the lock is free, a newcomer takes it in the same turn of the loop
    instead of queueing behind a writer that was woken but has not run yet."""
    lock = _WriterLock()
    await lock.acquire()
    queued = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    assert not queued.done()
    lock.release()  # wakes the queued one; it runs at its next turn
    async with asyncio.timeout(1):
        await lock.acquire()  # the newcomer does not wait for that turn
    assert lock.locked() and not queued.done()
    lock.release()
    await asyncio.wait_for(queued, 0.5)  # and the queued one still gets it after
    assert lock.locked()
    lock.release()


async def test_a_queued_writer_cancelled_after_its_wake_up_passes_it_on() -> None:
    lock = _WriterLock()
    await lock.acquire()
    first = asyncio.create_task(lock.acquire())
    second = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    lock.release()  # wakes the first...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, 0.5)
    assert first.cancelled() and lock.locked()
    lock.release()


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


async def test_after_postgres_drops_the_pools_connections_one_try_fails_retryably() -> None:
    """No ping before each use (it cost three round trips per transaction): when
    PostgreSQL restarts, the first statement on a dead pooled connection fails, as one
    the callers may try again (``unreachable``: the services answer UNAVAILABLE and the
    gateway retries on any replica), and that failure throws away every pooled
    connection, so the next try, and every later call, runs on a new one."""
    url = await fresh_database()
    engine = make_engine(url, pool_size=3)
    admin = make_engine(url)
    try:
        async with engine.connect() as a, engine.connect() as b, engine.connect() as c:
            for conn in (a, b, c):  # three connections in the pool
                await conn.execute(text("SELECT 1"))
        async with admin.connect() as conn:  # what a restart does to them
            ended = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            assert ended.scalar_one() >= 3
        with pytest.raises(Exception) as failed:
            async with reading(engine) as conn:
                await conn.execute(text("SELECT 1"))
        assert unreachable(failed.value), failed.value
        for _ in range(3):  # the other two dead connections went with the first
            async with reading(engine) as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await admin.dispose()
        await engine.dispose()
        await drop(url)
