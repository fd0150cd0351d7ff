"""What the cart service needs from the payment adapter, and nothing more.

``payments_client.GrpcPayments`` implements it over gRPC; tests plug in their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CardInput:
    number: str
    expiry: str
    cvv: str
    # The provider's one-time token (hosted card fields): then the card fields are empty.
    token: str = ""

    def __repr__(self) -> str:  # never log a card
        return "CardInput(***)"


@dataclass(frozen=True, slots=True)
class PaymentResult:
    status: str  # approved | declined | unknown | not_sent
    decline_reason: str = ""
    brand: str = ""
    last4: str = ""


class PaymentUnreachable(Exception):
    """The payment adapter did not answer: the payment's outcome is not known here."""


class Payments(Protocol):
    """The payment adapter, as the cart service uses it."""

    async def charge(
        self,
        key: str,
        cart_id: str,
        amount_cents: int,
        currency: str,
        card: CardInput,
        description: str,
    ) -> PaymentResult:
        """Charge once per key; raises FieldError for a wrong card field."""

    async def lookup(self, key: str) -> PaymentResult | None:
        """The payment under ``key`` (reconciled), or None when there is none."""

    async def refund(self, key: str, payment_key: str, amount_cents: int) -> str:
        """Refund once per key: "approved", "declined" or "unknown" (reconciled later);
        raises PaymentUnreachable when the adapter does not answer."""
