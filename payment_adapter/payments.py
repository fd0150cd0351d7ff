"""Payments: once per idempotency key, throttled toward the provider, reconciled when late.

- The key is the ``payments`` primary key: a double click, a retried gRPC call or a
  second adapter process finds the first payment instead of charging again (and the
  provider is idempotent on the same key besides).
- At most ``concurrency`` charges are in flight toward the provider, for every adapter
  replica together (``slots``): that is the very reason the waiting room exists. A
  charge that cannot get a slot within the provider timeout is not sent at all
  (``not_sent``): nothing was charged.
- A provider that does not answer within ``timeout_s`` leaves the payment ``unknown``;
  ``reconcile`` asks the provider what happened (on ``get``, and in the background for
  every payment left unknown or pending by a crash). Never a double charge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_adapter.cards import parse_card
from payment_adapter.providers import Answer, Provider, ProviderError
from payment_adapter.slots import LocalSlots, SharedSlots, slots_for
from payment_adapter.store import payments
from waitroom.db import reading, writing
from waitroom.metrics import (
    PAYMENTS,
    PAYMENTS_IN_FLIGHT,
    PAYMENTS_UNKNOWN,
    PAYMENTS_UNKNOWN_OLDEST,
    PROVIDER_LATENCY,
    timed,
)
from waitroom.validation import FieldError, NotFound, Refused

log = logging.getLogger(__name__)
SETTLED = ("approved", "declined", "not_sent")
CURRENCIES = ("CAD",)


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    key: str
    cart_id: str
    amount_cents: int
    currency: str
    status: str  # pending | approved | declined | unknown | not_sent
    decline_reason: str
    brand: str
    last4: str
    provider: str
    provider_reference: str
    created_at_ms: int
    settled_at_ms: int


def _record(row: Any) -> PaymentRecord:
    return PaymentRecord(
        key=row.idempotency_key,
        cart_id=row.cart_id,
        amount_cents=int(row.amount_cents),
        currency=row.currency,
        status=row.status,
        decline_reason=row.decline_reason or "",
        brand=row.brand,
        last4=row.last4,
        provider=row.provider,
        provider_reference=row.provider_reference or "",
        created_at_ms=int(row.created_at_ms),
        settled_at_ms=int(row.settled_at_ms or 0),
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class PaymentService:
    engine: AsyncEngine
    provider: Provider
    concurrency: int = 8
    timeout_s: float = 10.0
    # The provider's own deadline: a charge it has no record of this long after it was
    # sent will never be made. Until then "no record" is unknown, not declined: a real
    # provider may still be working on a request that reached it late.
    deadline_s: float = 300.0
    clock_ms: Callable[[], int] = _now_ms
    _slots: LocalSlots | SharedSlots = field(init=False)
    _in_flight: dict[str, asyncio.Future[PaymentRecord]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._slots = slots_for(self.engine, self.concurrency)

    async def prepare(self) -> None:
        """Ready the provider slots shared with the other replicas (PostgreSQL)."""
        if isinstance(self._slots, SharedSlots):
            await self._slots.prepare()

    async def charge(
        self,
        key: str,
        cart_id: str,
        amount_cents: int,
        currency: str,
        number: str,
        expiry: str,
        cvv: str,
        description: str = "",
        card_token: str = "",
    ) -> PaymentRecord:
        """Charge once per ``key``; a key seen before returns its payment (reconciled).
        ``card_token``: the hosted card fields' token, instead of the card."""
        key = key.strip()
        if not 8 <= len(key) <= 100:
            raise FieldError("invalid_idempotency_key", "idempotency_key")
        if not cart_id:
            raise FieldError("required", "cart_id")
        if amount_cents <= 0:
            raise FieldError("invalid_amount", "amount_cents")
        if currency not in CURRENCIES:
            raise FieldError("unsupported_currency", "currency")
        if card_token:
            if len(card_token) > 100:
                raise FieldError("invalid_card_token", "card_token")
            found = await self.provider.card_of(card_token)
            if found is None:
                raise FieldError("invalid_card_token", "card_token")
            number, expiry, cvv = found
        card = parse_card(number, expiry, cvv, self._now())
        existing = await self._get(key)
        if existing is None:
            try:
                async with writing(self.engine) as conn:
                    await conn.execute(
                        insert(payments).values(
                            idempotency_key=key,
                            cart_id=cart_id,
                            amount_cents=amount_cents,
                            currency=currency,
                            status="pending",
                            brand=card.brand.value,
                            last4=card.last4,
                            provider=self.provider.name,
                            created_at_ms=self.clock_ms(),
                        )
                    )
            except IntegrityError:  # the same key at the same instant elsewhere
                existing = await self._get(key)
        if existing is not None:
            if (existing.cart_id, existing.amount_cents) != (cart_id, amount_cents):
                raise Refused("idempotency_key_reused", "idempotency_key")
            return await self._await_or_reconcile(existing)
        future: asyncio.Future[PaymentRecord] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            record = await self._send(key, amount_cents, currency, card, description)
            future.set_result(record)
            return record
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._in_flight[key]

    async def get(self, key: str) -> PaymentRecord:
        """The payment under ``key``, reconciled with the provider if still unsettled."""
        record = await self._get(key.strip())
        if record is None:
            raise NotFound("unknown_payment", "idempotency_key")
        return await self._await_or_reconcile(record)

    async def measure_unknown(self) -> tuple[int, float]:
        """(payments not settled, age in seconds of the oldest), published as gauges."""
        async with reading(self.engine) as conn:
            count, oldest = (
                await conn.execute(
                    select(func.count(), func.min(payments.c.created_at_ms)).where(
                        payments.c.status.in_(("pending", "unknown"))
                    )
                )
            ).one()
        age_s = 0.0 if oldest is None else max(0.0, (self.clock_ms() - int(oldest)) / 1000)
        PAYMENTS_UNKNOWN.set(int(count))
        PAYMENTS_UNKNOWN_OLDEST.set(age_s)
        return int(count), age_s

    async def reconcile_pending(self, older_than_ms: int) -> int:
        """Reconcile every unsettled payment older than ``older_than_ms`` (a crash's
        leftovers, late answers); returns how many were settled."""
        cutoff = self.clock_ms() - older_than_ms
        async with reading(self.engine) as conn:
            rows = (
                await conn.execute(
                    select(payments).where(
                        payments.c.status.in_(("pending", "unknown")),
                        payments.c.created_at_ms <= cutoff,
                    )
                )
            ).all()
        settled = 0
        for row in rows:
            if row.idempotency_key in self._in_flight:
                continue
            record = await self._reconcile(_record(row))
            settled += record.status in SETTLED
        return settled

    async def _await_or_reconcile(self, record: PaymentRecord) -> PaymentRecord:
        if record.status in SETTLED:
            return record
        waiting = self._in_flight.get(record.key)
        if waiting is not None:  # a double click while the first is with the provider
            return await asyncio.shield(waiting)
        return await self._reconcile(record)

    async def _send(
        self, key: str, amount_cents: int, currency: str, card: Any, description: str
    ) -> PaymentRecord:
        async with self._slots.hold(self.timeout_s) as slot:
            if not slot:
                log.warning("payment %s not sent: %d already in flight", key, self.concurrency)
                return await self._settle(key, "not_sent", "provider_busy", "", final=True)
            try:
                PAYMENTS_IN_FLIGHT.inc()
                with timed(PROVIDER_LATENCY, self.provider.name, "charge"):
                    answer = await asyncio.wait_for(
                        self.provider.charge(key, amount_cents, currency, card, description),
                        self.timeout_s,
                    )
            except (TimeoutError, ProviderError) as exc:
                log.warning(
                    "payment %s: no answer from %s (%r); reconcile", key, self.provider.name, exc
                )
                return await self._settle(key, "unknown", "", "", final=False)
            finally:
                PAYMENTS_IN_FLIGHT.dec()
        return await self._apply(key, answer)

    async def _reconcile(self, record: PaymentRecord) -> PaymentRecord:
        try:
            with timed(PROVIDER_LATENCY, self.provider.name, "lookup"):
                answer = await asyncio.wait_for(self.provider.lookup(record.key), self.timeout_s)
        except (TimeoutError, ProviderError) as exc:
            log.warning("payment %s still unknown: %r", record.key, exc)
            return record
        if answer is None:
            if self.clock_ms() < record.created_at_ms + self.deadline_s * 1000:
                log.info("payment %s: no record at the provider yet; still unknown", record.key)
                return await self._settle(record.key, "unknown", "", "", final=False)
            # Past the provider's deadline: it never made this charge, nothing to undo.
            return await self._settle(record.key, "declined", "provider_timeout", "", final=True)
        return await self._apply(record.key, answer)

    async def _apply(self, key: str, answer: Answer) -> PaymentRecord:
        status = "approved" if answer.approved else "declined"
        return await self._settle(key, status, answer.reason, answer.reference, final=True)

    async def _settle(
        self, key: str, status: str, reason: str, reference: str, *, final: bool
    ) -> PaymentRecord:
        async with writing(self.engine) as conn:
            changed = await conn.execute(
                update(payments)
                .where(
                    payments.c.idempotency_key == key,
                    payments.c.status.in_(("pending", "unknown")),
                )
                .values(
                    status=status,
                    decline_reason=reason or None,
                    provider_reference=reference or None,
                    settled_at_ms=self.clock_ms() if final else None,
                )
            )
        if changed.rowcount:
            PAYMENTS.labels(status).inc()
        record = await self._get(key)
        assert record is not None
        return record

    async def _get(self, key: str) -> PaymentRecord | None:
        async with reading(self.engine) as conn:
            row = (
                await conn.execute(select(payments).where(payments.c.idempotency_key == key))
            ).one_or_none()
        return None if row is None else _record(row)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock_ms() / 1000, UTC)
