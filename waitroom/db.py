"""SQL engines for the services' own databases: SQLite by default, PostgreSQL when configured.

One code path for both through SQLAlchemy's async engine. Writers go through ``writing``
(on SQLite: one writer at a time, queued in-process), readers through ``reading`` (no
write lock). The cart service and the payment adapter each keep their tables in their
own module; this is all they share.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from sqlalchemy import event, make_url, text
from sqlalchemy import exc as sa_exc
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


class _WriterLock:
    """Held while one write block runs. Unlike ``asyncio.Lock``, a newcomer takes it at
    once whenever it is free, even with others queued: ``asyncio.Lock`` hands it to the
    first in line, who takes it only at its next turn of the event loop, and under load
    every write then waited a whole turn of the loop behind the one before (a convoy: the
    cart service's writers waited 0.7 s each for a lock that was free most of the time).
    Nobody starves: SQLite blocks never suspend while holding it (statements run inline),
    so whenever a queued writer runs, it finds the lock free."""

    def __init__(self) -> None:
        self._held = False
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        while self._held:
            turn = asyncio.get_running_loop().create_future()
            self._queue.append(turn)
            try:
                await turn
            except BaseException:
                if turn in self._queue:
                    self._queue.remove(turn)
                elif not turn.cancelled():
                    self._wake_one()  # woken, then cancelled: pass the turn on
                raise
        self._held = True

    def release(self) -> None:
        self._held = False
        self._wake_one()

    def _wake_one(self) -> None:
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return


@dataclass(slots=True)
class _Group:
    """One SQLite transaction shared by the write blocks of one turn of the event loop:
    each runs in a savepoint of it, and one commit makes them all durable."""

    conn: AsyncConnection
    committed: asyncio.Future[None]


@dataclass(slots=True)
class _Writers:
    """The writers of one SQLite engine in this process: the lock a block holds while it
    runs, the transaction the blocks of this turn fill (None between groups), and the
    tasks that commit them."""

    lock: _WriterLock = field(default_factory=_WriterLock)
    group: _Group | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


_WRITERS: weakref.WeakKeyDictionary[AsyncEngine, _Writers] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction: its changes are durable, all or none, when the block exits.

    On SQLite the blocks of a process run one at a time (``_WriterLock``): SQLite admits
    one writer at a time, and its busy handler makes a waiting writer sleep in growing
    steps (up to 100 ms) instead of taking the lock the moment it is free. Every write of
    a process must come through here: statements run on the event loop's thread
    (``_InlineConnection``), so a second writer of the same process waiting in SQLite's
    busy handler would stop the loop, and with it the first writer, until the busy
    timeout.

    The blocks that run in the same turn of the event loop share one commit (group
    commit): the first opens a transaction and schedules its commit for the loop's next
    turn; each block runs in a savepoint of it (a block that raises rolls back to its
    savepoint: only its own changes are undone). Each block's exit waits for that
    commit, so nothing is answered before it is on disk (``synchronous=FULL``); a commit
    that fails raises in every block of its group. A commit is an fsync on the loop's
    thread; one per write was the cart service's largest cost under load
    (``docs/operations.md``).

    PostgreSQL needs none of this: its row locks let writers of other rows run at once,
    and it groups commits itself."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    writers = _WRITERS.get(engine)
    if writers is None:
        writers = _WRITERS[engine] = _Writers()
    await writers.lock.acquire()
    try:
        group = writers.group
        if group is None:
            group = writers.group = await _open_group(engine)
            committing = asyncio.get_running_loop().create_task(_commit_group(writers, group))
            writers.tasks.add(committing)
            committing.add_done_callback(writers.tasks.discard)
        savepoint = await group.conn.begin_nested()
        try:
            yield group.conn
        except BaseException:
            if savepoint.is_active:
                await savepoint.rollback()
            raise
        await savepoint.commit()
    finally:
        writers.lock.release()
    await asyncio.shield(group.committed)


async def _open_group(engine: AsyncEngine) -> _Group:
    conn = await engine.connect()
    try:
        await conn.begin()  # BEGIN IMMEDIATE (see _sqlite_immediate)
    except BaseException:
        await conn.close()
        raise
    return _Group(conn, asyncio.get_running_loop().create_future())


async def _commit_group(writers: _Writers, group: _Group) -> None:
    """At the loop's next turn (once no block is running): commit the group's transaction
    and tell its writers (the error, if it failed)."""
    await writers.lock.acquire()
    try:
        writers.group = None
        await group.conn.commit()
    except BaseException as exc:  # cancelled too (at shutdown): nothing was committed
        failure = exc if isinstance(exc, Exception) else RuntimeError("the commit was cancelled")
        group.committed.set_exception(failure)
        group.committed.exception()  # a group of only refused blocks has no one to read it
        with contextlib.suppress(Exception):
            await group.conn.rollback()
        if failure is not exc:
            raise
    else:
        group.committed.set_result(None)
    finally:
        try:
            await group.conn.close()
        finally:
            writers.lock.release()


@contextlib.asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: on SQLite it takes no write lock (``BEGIN``, not
    ``BEGIN IMMEDIATE``), so readers never queue behind writers.

    On PostgreSQL it runs in autocommit: no ``BEGIN`` and ``ROLLBACK`` around the reads,
    two round trips fewer for each (a cart's snapshot is a handful of reads). Nothing is
    lost by it: at PostgreSQL's READ COMMITTED every statement sees its own snapshot,
    inside a transaction or not."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            yield await conn.execution_options(read_only=True)
        else:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")


# How long a statement waits for another process's SQLite write lock. It waits on the
# event loop's thread (see _InlineConnection): this process's own writers queue in
# ``writing`` instead, so only another process (a CLI import, say) is ever waited for.
SQLITE_BUSY_TIMEOUT_S = 5.0


class _InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements run on the calling thread: the event
    loop's.

    aiosqlite hands every call to a thread of its own and the result back through the
    event loop; under load each of those hops waits for the GIL, and the cart service
    spent 40 % of its CPU on them (``docs/operations.md``). A statement on a local SQLite
    file takes microseconds (a commit: one fsync), so running it in place costs the loop
    less than the hop. aiosqlite's thread still opens and closes the connection
    (``check_same_thread=False`` lets the loop use it). This overrides one method of
    aiosqlite (pinned in constraints.txt; ``tests/test_db.py`` checks it still holds).
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        # Its thread only opens and closes: never keep the process alive for it (a
        # connection a crash left open would otherwise hold the interpreter at exit).
        self._thread.daemon = True

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _sqlite_connector(path: str) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)

    async def creator() -> aiosqlite.Connection:
        return await _InlineConnection(connect, iter_chunk_size=64)

    return creator


ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """``url`` with the async driver this project ships: a plain ``postgresql://`` (or
    ``postgres://``) or ``sqlite:///`` URL, as an operator would write it, works too."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    driver = ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        return url
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def pool_options(url: str, size: int) -> dict[str, Any]:
    """Engine options for a pool keeping ``size`` connections open on PostgreSQL (and up
    to 10 more for a burst, SQLAlchemy's default). SQLite has its own small pool (see
    ``make_engine``). A larger pool is not faster on a small machine: more transactions
    at once wait longer on the same seat rows and share the same cores (measured in the
    two-replica drill: 5 kept + 10 for bursts did better than 20, or 6, kept open)."""
    if not async_url(url).startswith("postgresql"):
        return {}
    return {"pool_size": size}


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``
    (plain ``sqlite:///`` and ``postgresql://`` get those drivers)."""
    url = async_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if not database or database == ":memory:":
            raise ValueError(f"the ledger needs an SQLite file, not {url!r}")
        # Few connections: one writer at a time anyway (see writing).
        kwargs = {"pool_size": 4, "max_overflow": 0, **kwargs}
        engine = create_async_engine(url, async_creator=_sqlite_connector(database), **kwargs)
        _sqlite_immediate(engine)
        return engine
    # No ping before each use (SQLAlchemy's pool_pre_ping): on asyncpg it is a BEGIN, a
    # statement and a ROLLBACK, three round trips per transaction, 9 % of a cart
    # replica's CPU in the two-replica drill. After PostgreSQL restarts, the first
    # statement on a dead connection fails as ``unreachable`` (the services answer
    # UNAVAILABLE, which the callers' channels retry), and SQLAlchemy then discards
    # every connection the pool holds, so the retry runs on a new one.
    return create_async_engine(url, **kwargs)


async def create_database(server_url: str, prefix: str) -> str:
    """A new, empty PostgreSQL database ``<prefix>_<random>`` on the server of
    ``server_url``; returns its URL. (For drills and tests: drop it with
    ``drop_database``.)"""
    name = f"{prefix}_{secrets.token_hex(4)}"
    await _on_server(server_url, f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


async def drop_database(server_url: str, url: str) -> None:
    """Drop the database of ``url`` (made by ``create_database``), connections and all."""
    name = url.rsplit("/", 1)[1]
    await _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _on_server(server_url: str, sql: str) -> None:
    """Run one statement outside any transaction (CREATE/DROP DATABASE need that)."""
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await admin.dispose()


# PostgreSQL's SQLSTATE classes of a database that cannot serve right now: 08, connection
# exceptions; 57P, operator intervention (shutting down, crash recovery, "cannot connect
# now" while it starts).
_UNREACHABLE_SQLSTATES = ("08", "57P")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or was going away (a
    restart, a failover, a refused or broken connection, SQLite's lock held too long),
    rather than that the statement or the code was wrong. Such a call failed whole: its
    transaction did not commit, or its connection broke before the answer, so the caller
    may try again (the services answer it UNAVAILABLE, see ``waitroom.rpc``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError):  # refused, reset, timed out (TimeoutError)
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (sa_exc.DisconnectionError, sa_exc.InterfaceError)):
            return True
        if str(getattr(current, "sqlstate", "") or "").startswith(_UNREACHABLE_SQLSTATES):
            return True
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return True
        orig = getattr(current, "orig", None)
        driver = getattr(current, "driver_exception", None)
        for inner in (orig, driver, current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)
    return False
