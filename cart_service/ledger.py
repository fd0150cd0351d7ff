"""The registration ledger: durable SQL, SQLite by default, PostgreSQL when configured.

One code path for both through SQLAlchemy's async engine. Seats are counted, never
stored as a number to decrement: a seat is taken by a confirmed registration, or by an
item of an open cart whose hold has not expired. So an expired hold frees its seats the
moment it expires, with no sweeper, and a crash can never leave a seat "taken" by nobody.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    event,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()

activities = Table(
    "activities",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("capacity", Integer, nullable=False),
)

families = Table(
    "families",
    metadata,
    Column("client_number", String(32), primary_key=True),
    # E.164, as normalised from what people type ("418 839-2002" -> "+14188392002").
    Column("principal_phone", String(20), nullable=False),
    Column("email", String(254), nullable=True),
)

members = Table(
    "members",
    metadata,
    Column("id", String(32), primary_key=True),  # the person number on the leisure card
    Column("client_number", String(32), ForeignKey("families.client_number"), nullable=False),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("birth_date", Date, nullable=False),
    # "responsible" (the family's responsible person), "parent", "child", ...
    Column("relationship", String(32), nullable=False),
    Column("class_level", Integer, nullable=True),  # school grade, for level-based courses
)

carts = Table(
    "carts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("family", String(64), nullable=False),
    Column("status", String(16), nullable=False, default="open"),  # open | paid
    # Every change restarts the hold; past this instant the cart's items hold nothing.
    Column("hold_expires_at_ms", BigInteger, nullable=False),
)

cart_items = Table(
    "cart_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cart_id", String(64), ForeignKey("carts.id"), nullable=False, index=True),
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False, index=True),
    Column("participant", String(64), nullable=False),
    UniqueConstraint("cart_id", "activity_id", "participant"),
)

registrations = Table(
    "registrations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False),
    Column("participant", String(64), nullable=False),
    Column("cart_id", String(64), ForeignKey("carts.id"), nullable=False),
    Column("confirmed_at_ms", BigInteger, nullable=False),
    UniqueConstraint("activity_id", "participant"),
)


def _sqlite_immediate(engine: AsyncEngine) -> None:
    """SQLite: every transaction takes the write lock at BEGIN (``BEGIN IMMEDIATE``), so a
    count-then-insert cannot interleave with another writer's; waiters queue on the lock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 60}, **kwargs)
        _sqlite_immediate(engine)
        return engine
    return create_async_engine(url, **kwargs)


async def create_schema(engine: AsyncEngine) -> None:
    """Create the ledger's tables if they are missing."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
