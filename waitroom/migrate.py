"""Schema migrations (Alembic) for the registration ledger and the payment tables.

Each service brings its tables to the newest revision when it starts (``upgrade``), so a
new release runs on last season's database and keeps its rows; several replicas starting
at once migrate one after the other (PostgreSQL: an advisory lock for the transaction).
The ledger and the payment tables have their own revisions and version tables
(``alembic_version_ledger``, ``alembic_version_payments``): they may share a database or
not. The first revision (``0001``) is the schema of the release before migrations and
creates only what is missing, so a database that release made (``create_all``) goes
through it unchanged, rows and all, then on like any other.

A new revision, when a model changes (``docs/operations.md``)::

    python -m waitroom.migrate revision ledger "members pending validation"

writes ``cart_service/migrations/versions/<n>_<slug>.py`` from the difference between the
models and a scratch database at the newest revision; read it before committing (the
scratch database is SQLite: write a boolean's server default as ``sa.true()`` or
``sa.false()``, which PostgreSQL accepts too, not the ``sa.text('1')`` it renders).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from waitroom.db import make_engine


@dataclass(frozen=True)
class Schema:
    name: str
    script_location: str  # package:directory
    version_table: str
    metadata: MetaData
    lock_key: int  # PostgreSQL advisory lock held while migrating

    def includes(self, name: str | None, kind: str, parents: dict[str, str | None]) -> bool:
        """Alembic's ``include_name``: the other schema's tables, when both share a
        database, are not this one's to create or drop."""
        if kind == "table":
            return name in self.metadata.tables or name == self.version_table
        return True

    def config(self, conn: Connection | None = None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", self.script_location)
        cfg.attributes["schema"] = self
        cfg.attributes["connection"] = conn
        return cfg


def _schemas() -> dict[str, Schema]:
    from cart_service.ledger import LEDGER
    from payment_adapter.store import PAYMENTS

    return {LEDGER.name: LEDGER, PAYMENTS.name: PAYMENTS}


# Alembic keeps the running migration in module state (``alembic.context``): two in one
# process at once (a test running both services) must take turns.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def upgrade(engine: AsyncEngine, schema: Schema) -> None:
    """Bring ``schema``'s tables in ``engine``'s database to the newest revision."""
    turn = _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with turn, engine.begin() as conn:
        await conn.run_sync(_upgrade, schema)


def _upgrade(conn: Connection, schema: Schema) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": schema.lock_key})
    command.upgrade(schema.config(conn), "head")


async def revision_of(engine: AsyncEngine, schema: Schema) -> str | None:
    """The revision ``schema``'s tables are at in ``engine``'s database (None: none)."""

    def read(conn: Connection) -> str | None:
        if schema.version_table not in inspect(conn).get_table_names():
            return None
        row = conn.execute(text(f"SELECT version_num FROM {schema.version_table}")).first()
        return None if row is None else str(row[0])

    async with engine.connect() as conn:
        return await conn.run_sync(read)


def head_of(schema: Schema) -> str:
    head = ScriptDirectory.from_config(schema.config()).get_current_head()
    assert head is not None
    return head


def run_migrations(context: Any) -> None:
    """The body of each ``migrations/env.py``: online, on the connection ``upgrade`` gives."""
    schema: Schema = context.config.attributes["schema"]
    conn: Connection = context.config.attributes["connection"]
    context.configure(
        connection=conn,
        target_metadata=schema.metadata,
        version_table=schema.version_table,
        render_as_batch=conn.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
        include_name=schema.includes,
    )
    with context.begin_transaction():
        context.run_migrations()


def _new_revision(schema: Schema, message: str) -> Path:
    """A revision file from the models' difference with a scratch database at head."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite+aiosqlite:///{scratch}/scratch.sqlite3")

        async def at_head() -> None:
            try:
                await upgrade(engine, schema)
            finally:
                await engine.dispose()

        asyncio.run(at_head())
        sync_url = f"sqlite:///{scratch}/scratch.sqlite3"
        from sqlalchemy import create_engine

        with create_engine(sync_url).begin() as conn:
            cfg = schema.config(conn)
            script = ScriptDirectory.from_config(cfg)
            number = f"{len(list(script.walk_revisions())) + 1:04d}"
            slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40].strip("_")
            made = command.revision(cfg, message, autogenerate=True, rev_id=number)
            assert made is not None and not isinstance(made, list)
            path = Path(made.path)
            target = path.with_name(f"{number}_{slug}.py")
            path.rename(target)
            return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m waitroom.migrate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="a new revision from the models' changes")
    rev.add_argument("schema", choices=sorted(_schemas()))
    rev.add_argument("message")
    up = sub.add_parser("upgrade", help="bring a database's tables to the newest revision")
    up.add_argument("database", help="sqlite+aiosqlite:///path or postgresql+asyncpg://...")
    args = parser.parse_args(argv)
    if args.command == "revision":
        print(_new_revision(_schemas()[args.schema], args.message))
        return 0

    async def upgrade_all() -> None:
        engine = make_engine(args.database)
        try:
            for schema in _schemas().values():
                await upgrade(engine, schema)
                print(f"{schema.name}: at {await revision_of(engine, schema)}")
        finally:
            await engine.dispose()

    asyncio.run(upgrade_all())
    return 0


if __name__ == "__main__":
    sys.exit(main())
