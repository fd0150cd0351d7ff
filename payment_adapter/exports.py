"""The payments of an event as CSV rows (``waitroom export payments``): every charge the
adapter recorded for the event's carts, with its outcome, for accounting and for
reconciling with the provider's own report."""

from __future__ import annotations

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_adapter.store import payments
from waitroom.db import reading
from waitroom.schedule import iso_at
from waitroom.validation import NotFound


async def payments_rows(
    engine: AsyncEngine, event_id: str, zone: str
) -> tuple[list[str], list[list[object]]]:
    query = (
        select(payments)
        .where(payments.c.cart_id.startswith(f"{event_id}/", autoescape=True))
        .order_by(payments.c.created_at_ms, payments.c.idempotency_key)
    )
    async with reading(engine) as conn:
        if not await conn.run_sync(lambda sync: inspect(sync).has_table(payments.name)):
            raise NotFound("no_payment_tables", "payments_database")
        found = (await conn.execute(query)).all()
    header = [
        "idempotency_key", "cart_id", "amount", "amount_cents", "currency", "status",
        "decline_reason", "brand", "last4", "provider", "provider_reference", "created_at",
        "settled_at",
    ]  # fmt: skip
    rows: list[list[object]] = [
        [
            r.idempotency_key,
            r.cart_id,
            f"{r.amount_cents / 100:.2f}",
            r.amount_cents,
            r.currency,
            r.status,
            r.decline_reason or "",
            r.brand,
            r.last4,
            r.provider,
            r.provider_reference or "",
            iso_at(r.created_at_ms, zone),
            iso_at(r.settled_at_ms or 0, zone),
        ]
        for r in found
    ]
    return header, rows
