"""The payment adapter's own durable tables, in the ledger's database by default.

``payments`` is the adapter's record, one row per idempotency key: the key is the primary
key, so a second charge under it finds the first. ``sandbox_charges`` is the sandbox
provider's side of the world (what a real provider keeps on its servers): it lets a
reconciliation ask "did you charge this key?" after a timeout, across restarts.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from waitroom.migrate import Schema, upgrade

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("idempotency_key", String(100), primary_key=True),
    Column("cart_id", String(100), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # pending (sent, no answer yet) | approved | declined | unknown | not_sent
    Column("status", String(16), nullable=False),
    Column("decline_reason", String(64), nullable=True),
    Column("brand", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("provider_reference", String(64), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("settled_at_ms", BigInteger, nullable=True),
)

sandbox_charges = Table(
    "sandbox_charges",
    metadata,
    Column("idempotency_key", String(100), primary_key=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # approved | declined
    Column("reason", String(64), nullable=True),
    Column("reference", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)


# The sandbox provider's hosted card fields: a card typed on the provider's own page
# becomes a token the browser hands to the registration; the card stays here.
sandbox_card_tokens = Table(
    "sandbox_card_tokens",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("number", String(19), nullable=False),
    Column("expiry", String(7), nullable=False),
    Column("cvv", String(4), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)


# One row per payment allowed in flight toward the provider at once, for every adapter
# replica together (``payment_adapter.slots``; PostgreSQL only).
provider_slots = Table(
    "provider_slots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
)


# Refunds of approved payments, one row per refund key (reconciled like charges).
refunds = Table(
    "refunds",
    metadata,
    Column("idempotency_key", String(100), primary_key=True),
    Column("payment_key", String(100), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    # pending (sent, no answer yet) | approved | declined | unknown
    Column("status", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("provider_reference", String(64), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("settled_at_ms", BigInteger, nullable=True),
)

# The sandbox provider's side of refunds (what a real provider keeps).
sandbox_refunds = Table(
    "sandbox_refunds",
    metadata,
    Column("idempotency_key", String(100), primary_key=True),
    Column("charge_key", String(100), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("reference", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# The payment tables' revisions: payment_adapter/migrations (waitroom/migrate.py).
PAYMENTS = Schema(
    name="payments",
    script_location="payment_adapter:migrations",
    version_table="alembic_version_payments",
    metadata=metadata,
    lock_key=0x77A1BA7E,
)


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the payment tables to the newest revision (created if missing; those of an
    earlier release upgraded, their rows kept)."""
    await upgrade(engine, PAYMENTS)
