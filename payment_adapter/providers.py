"""Payment providers behind one interface, and the sandbox provider.

The sandbox answers by card number, like a real provider's test cards, so tests, the
drill and a parent trying ``make run`` see every outcome:

| card number           | outcome                                                         |
| --------------------- | --------------------------------------------------------------- |
| 4242 4242 4242 4242   | approved (any other valid Visa or Mastercard too)               |
| 5555 5555 5555 4444   | approved                                                        |
| 4000 0000 0000 0002   | declined, ``card_declined``                                     |
| 4000 0000 0000 9995   | declined, ``insufficient_funds``                                |
| 4000 0000 0000 0119   | charged, but the answer never comes back in time (reconcile: approved) |
| 4000 0000 0000 0127   | no answer in time, and nothing charged (reconcile: not charged) |

It keeps what it charged in ``sandbox_charges`` and is idempotent per key, as real
providers are: the same key twice is one charge.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_adapter.cards import Card
from payment_adapter.store import sandbox_card_tokens, sandbox_charges, sandbox_refunds
from waitroom.db import reading, writing


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's answer about one charge."""

    approved: bool
    reason: str = ""
    reference: str = ""


class ProviderError(Exception):
    """The provider could not be reached or failed: the outcome is not known."""


class Provider(Protocol):
    name: str

    async def charge(
        self, key: str, amount_cents: int, currency: str, card: Card, description: str
    ) -> Answer:
        """Charge once per ``key`` (a key seen before returns its first answer)."""

    async def lookup(self, key: str) -> Answer | None:
        """What happened to the charge under ``key``; None if the provider never made it."""

    async def card_of(self, token: str) -> tuple[str, str, str] | None:
        """The card (number, expiry, code) a hosted-fields token stands for; None when
        the token is unknown or expired. A real provider charges the token itself."""

    async def refund(self, key: str, charge_key: str, amount_cents: int) -> Answer:
        """Refund ``amount_cents`` of the charge under ``charge_key``, once per ``key``."""

    async def lookup_refund(self, key: str) -> Answer | None:
        """What happened to the refund under ``key``; None if the provider never made it."""


DECLINES = {"4000000000000002": "card_declined", "4000000000009995": "insufficient_funds"}
CHARGED_BUT_SILENT = "4000000000000119"
SILENT = "4000000000000127"
# How long a hosted-fields token can be charged (the page's payment step, with margin).
TOKEN_TTL_MS = 30 * 60 * 1000


class SandboxProvider:
    """A provider simulated in the adapter's database, with a configurable latency."""

    name = "sandbox"

    def __init__(self, engine: AsyncEngine, latency_s: float = 0.15, hang_s: float = 3600) -> None:
        self._engine = engine
        self._latency_s = latency_s
        self._hang_s = hang_s
        self.in_flight = 0
        self.max_in_flight = 0

    async def charge(
        self, key: str, amount_cents: int, currency: str, card: Card, description: str
    ) -> Answer:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self._latency_s)
            earlier = await self.lookup(key)
            if earlier is not None:
                return earlier
            if card.number == SILENT:
                await asyncio.sleep(self._hang_s)
                raise ProviderError("no answer")
            reason = DECLINES.get(card.number, "")
            answer = Answer(not reason, reason, f"sbx_{secrets.token_hex(8)}")
            try:
                async with writing(self._engine) as conn:
                    await conn.execute(
                        insert(sandbox_charges).values(
                            idempotency_key=key,
                            amount_cents=amount_cents,
                            status="approved" if answer.approved else "declined",
                            reason=reason or None,
                            reference=answer.reference,
                            created_at_ms=int(time.time() * 1000),
                        )
                    )
            except IntegrityError:  # the same key at the same instant: one charge
                found = await self.lookup(key)
                assert found is not None
                return found
            if card.number == CHARGED_BUT_SILENT:
                await asyncio.sleep(self._hang_s)  # charged; the answer is lost on the way
            return answer
        finally:
            self.in_flight -= 1

    async def refund(self, key: str, charge_key: str, amount_cents: int) -> Answer:
        await asyncio.sleep(self._latency_s)
        earlier = await self.lookup_refund(key)
        if earlier is not None:
            return earlier
        async with writing(self._engine) as conn:
            charged = (
                await conn.execute(
                    select(sandbox_charges).where(sandbox_charges.c.idempotency_key == charge_key)
                )
            ).one_or_none()
            if charged is None or charged.status != "approved":
                return Answer(False, "no_such_charge")
            refunded = (
                await conn.execute(
                    select(func.coalesce(func.sum(sandbox_refunds.c.amount_cents), 0)).where(
                        sandbox_refunds.c.charge_key == charge_key
                    )
                )
            ).scalar_one()
            if int(refunded) + amount_cents > charged.amount_cents:
                return Answer(False, "refund_exceeds_charge")
            reference = f"sbr_{secrets.token_hex(8)}"
            await conn.execute(
                insert(sandbox_refunds).values(
                    idempotency_key=key,
                    charge_key=charge_key,
                    amount_cents=amount_cents,
                    reference=reference,
                    created_at_ms=int(time.time() * 1000),
                )
            )
        return Answer(True, "", reference)

    async def lookup_refund(self, key: str) -> Answer | None:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(
                    select(sandbox_refunds).where(sandbox_refunds.c.idempotency_key == key)
                )
            ).one_or_none()
        return None if row is None else Answer(True, "", row.reference)

    async def tokenize(self, number: str, expiry: str, cvv: str) -> str:
        """The hosted card fields' token for a card (checked before: cards.parse_card)."""
        token = f"tok_{secrets.token_urlsafe(24)}"
        async with writing(self._engine) as conn:
            await conn.execute(
                insert(sandbox_card_tokens).values(
                    token=token,
                    number=number,
                    expiry=expiry,
                    cvv=cvv,
                    created_at_ms=int(time.time() * 1000),
                )
            )
        return token

    async def card_of(self, token: str) -> tuple[str, str, str] | None:
        oldest = int(time.time() * 1000) - TOKEN_TTL_MS
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(
                    select(sandbox_card_tokens).where(
                        sandbox_card_tokens.c.token == token,
                        sandbox_card_tokens.c.created_at_ms >= oldest,
                    )
                )
            ).one_or_none()
        return None if row is None else (row.number, row.expiry, row.cvv)

    async def lookup(self, key: str) -> Answer | None:
        async with reading(self._engine) as conn:
            row = (
                await conn.execute(
                    select(sandbox_charges).where(sandbox_charges.c.idempotency_key == key)
                )
            ).one_or_none()
        if row is None:
            return None
        return Answer(row.status == "approved", row.reason or "", row.reference)
