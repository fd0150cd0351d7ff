"""Refunds of approved payments: once per idempotency key, never more than was charged,
and reconciled with the provider like charges when its answer is lost (an unknown refund
is asked about again; "no record" stays unknown until the provider's deadline)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_adapter.providers import Answer, Provider, ProviderError
from payment_adapter.store import payments, refunds
from waitroom.db import reading, writing
from waitroom.validation import FieldError, NotFound, Refused

log = logging.getLogger(__name__)
OPEN = ("pending", "unknown")


@dataclass(frozen=True, slots=True)
class RefundRecord:
    key: str
    payment_key: str
    amount_cents: int
    status: str  # pending | approved | declined | unknown
    reason: str
    provider_reference: str
    created_at_ms: int
    settled_at_ms: int


def _record(row: Any) -> RefundRecord:
    return RefundRecord(
        row.idempotency_key, row.payment_key, int(row.amount_cents), row.status,
        row.reason or "", row.provider_reference or "", int(row.created_at_ms),
        int(row.settled_at_ms or 0),
    )  # fmt: skip


@dataclass(slots=True)
class RefundService:
    engine: AsyncEngine
    provider: Provider
    clock_ms: Callable[[], int]
    timeout_s: float = 10.0
    deadline_s: float = 300.0

    async def refund(self, key: str, payment_key: str, amount_cents: int) -> RefundRecord:
        """Refund ``amount_cents`` of the approved payment ``payment_key`` once per
        ``key``; a key seen before returns its refund (reconciled)."""
        key = key.strip()
        if not 8 <= len(key) <= 100:
            raise FieldError("invalid_idempotency_key", "idempotency_key")
        if amount_cents <= 0:
            raise FieldError("invalid_amount", "amount_cents")
        existing = await self._get(key)
        if existing is not None:
            if (existing.payment_key, existing.amount_cents) != (payment_key, amount_cents):
                raise Refused("idempotency_key_reused", "idempotency_key")
            return existing if existing.status not in OPEN else await self.reconcile(existing)
        try:
            async with writing(self.engine) as conn:
                paid = (
                    await conn.execute(
                        select(payments.c.status, payments.c.amount_cents).where(
                            payments.c.idempotency_key == payment_key
                        )
                    )
                ).one_or_none()
                if paid is None:
                    raise NotFound("unknown_payment", "payment_key")
                if paid.status != "approved":
                    raise Refused("payment_not_approved", "payment_key")
                taken = (
                    await conn.execute(
                        select(func.coalesce(func.sum(refunds.c.amount_cents), 0)).where(
                            refunds.c.payment_key == payment_key, refunds.c.status != "declined"
                        )
                    )
                ).scalar_one()
                if int(taken) + amount_cents > int(paid.amount_cents):
                    raise Refused("refund_exceeds_payment", "amount_cents")
                await conn.execute(
                    insert(refunds).values(
                        idempotency_key=key, payment_key=payment_key,
                        amount_cents=amount_cents, status="pending",
                        created_at_ms=self.clock_ms(),
                    )
                )  # fmt: skip
        except IntegrityError:  # the same key at the same instant elsewhere
            found = await self._get(key)
            assert found is not None
            return found
        try:
            answer = await asyncio.wait_for(
                self.provider.refund(key, payment_key, amount_cents), self.timeout_s
            )
        except (TimeoutError, ProviderError) as exc:
            log.warning(
                "refund %s: no answer from %s (%r); reconcile", key, self.provider.name, exc
            )
            return await self._settle(key, "unknown", None)
        return await self._settle(key, "approved" if answer.approved else "declined", answer)

    async def reconcile(self, record: RefundRecord) -> RefundRecord:
        """Ask the provider what became of an unsettled refund."""
        try:
            answer = await asyncio.wait_for(self.provider.lookup_refund(record.key), self.timeout_s)
        except (TimeoutError, ProviderError) as exc:
            log.warning("refund %s still unknown: %r", record.key, exc)
            return record
        if answer is None:
            if self.clock_ms() < record.created_at_ms + self.deadline_s * 1000:
                return await self._settle(record.key, "unknown", None)
            return await self._settle(record.key, "declined", Answer(False, "provider_timeout"))
        return await self._settle(record.key, "approved" if answer.approved else "declined",
                                  answer)  # fmt: skip

    async def reconcile_pending(self, older_than_ms: int) -> int:
        """Reconcile the unsettled refunds older than ``older_than_ms``; how many settled."""
        cutoff = self.clock_ms() - older_than_ms
        async with reading(self.engine) as conn:
            rows = (
                await conn.execute(
                    select(refunds).where(
                        refunds.c.status.in_(OPEN), refunds.c.created_at_ms <= cutoff
                    )
                )
            ).all()
        settled = 0
        for row in rows:
            settled += (await self.reconcile(_record(row))).status not in OPEN
        return settled

    async def get(self, key: str) -> RefundRecord:
        record = await self._get(key.strip())
        if record is None:
            raise NotFound("unknown_refund", "idempotency_key")
        return record if record.status not in OPEN else await self.reconcile(record)

    async def _settle(self, key: str, status: str, answer: Answer | None) -> RefundRecord:
        final = status not in OPEN
        async with writing(self.engine) as conn:
            await conn.execute(
                update(refunds)
                .where(refunds.c.idempotency_key == key, refunds.c.status.in_(OPEN))
                .values(
                    status=status,
                    reason=(answer.reason or None) if answer else None,
                    provider_reference=(answer.reference or None) if answer else None,
                    settled_at_ms=self.clock_ms() if final else None,
                )
            )
        found = await self._get(key)
        assert found is not None
        return found

    async def _get(self, key: str) -> RefundRecord | None:
        async with reading(self.engine) as conn:
            row = (
                await conn.execute(select(refunds).where(refunds.c.idempotency_key == key))
            ).one_or_none()
        return None if row is None else _record(row)
