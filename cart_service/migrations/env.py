"""Alembic's entry point for these tables: the migrations run on the connection that
``waitroom.migrate.upgrade`` gives (see there)."""

from alembic import context

from waitroom.migrate import run_migrations

run_migrations(context)
