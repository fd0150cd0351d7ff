"""SQL engines for the services' own databases: SQLite by default, PostgreSQL when configured.

One code path for both through SQLAlchemy's async engine. Writers go through ``writing``
(on SQLite: one writer at a time, queued in-process), readers through ``reading`` (no
write lock). The cart service and the payment adapter each keep their tables in their
own module; this is all they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def _sqlite_immediate(engine: AsyncEngine) -> None:
    """SQLite: every transaction takes the write lock at BEGIN (``BEGIN IMMEDIATE``), so a
    count-then-insert cannot interleave with another writer's; waiters queue on the lock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        # Write-ahead log: a commit appends to the log (still fsynced: synchronous=FULL)
        # instead of rewriting pages through a rollback journal.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # Reads (``reading``) need no write lock: with the WAL they run beside a writer.
        if connection.get_execution_options().get("read_only"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


_WRITE_LOCKS: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite, the writers of this process first queue on an
    asyncio lock, in order: SQLite admits one writer at a time, and its busy handler makes
    a waiting writer sleep in growing steps (up to 100 ms) instead of taking the lock the
    moment it is free, which under load turns a queue of short transactions into seconds.
    PostgreSQL needs none of this: its row locks let writers of other rows run at once."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _WRITE_LOCKS.get(engine)
    if lock is None:
        lock = _WRITE_LOCKS[engine] = asyncio.Lock()
    async with lock, engine.begin() as conn:
        yield conn


@contextlib.asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: on SQLite it takes no write lock (``BEGIN``, not
    ``BEGIN IMMEDIATE``), so readers never queue behind writers."""
    async with engine.connect() as conn:
        yield await conn.execution_options(read_only=True)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``."""
    if url.startswith("sqlite"):
        # Few connections: one writer at a time anyway (see writing), and every aiosqlite
        # connection is a thread contending for the GIL.
        kwargs = {"pool_size": 4, "max_overflow": 0, **kwargs}
        engine = create_async_engine(url, connect_args={"timeout": 60}, **kwargs)
        _sqlite_immediate(engine)
        return engine
    return create_async_engine(url, **kwargs)
