"""Card input as parents type it, checked before anything is sent to a provider.

The Québec FAQ lists why payments fail: only Visa and Mastercard are accepted, a wrong
number, an expired card, a wrong security code. Each is told apart here, with the field
it concerns, so the page can say which one is wrong; spaces and dashes in the number are
simply removed. The card number never leaves this module except to the provider.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from stdnum import luhn

from waitroom.validation import FieldError


class CardBrand(enum.StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"


class CardError(FieldError):
    """A card field is wrong (see the module docstring for the codes)."""


@dataclass(frozen=True, slots=True)
class Card:
    number: str
    brand: CardBrand
    exp_month: int
    exp_year: int
    cvv: str

    @property
    def last4(self) -> str:
        return self.number[-4:]

    def __repr__(self) -> str:  # never print a card number or its code
        return f"Card({self.brand.value} ****{self.last4}, {self.exp_month:02d}/{self.exp_year})"


_SEPARATORS = re.compile(r"[\s-]+")
_EXPIRY = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*$")


def brand_of(number: str) -> CardBrand | None:
    """Visa (4..., 13, 16 or 19 digits) or Mastercard (51-55... or 2221-2720..., 16 digits)."""
    if number.startswith("4") and len(number) in (13, 16, 19):
        return CardBrand.VISA
    if len(number) == 16:
        head2, head4 = int(number[:2]), int(number[:4])
        if 51 <= head2 <= 55 or 2221 <= head4 <= 2720:
            return CardBrand.MASTERCARD
    return None


def parse_card(number: str, expiry: str, cvv: str, now: datetime) -> Card:
    """A checked card from what was typed; CardError names the first wrong field.

    ``expiry`` is ``MM/YY`` or ``MM/YYYY``; a card is valid through the last day of its
    expiry month. ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    digits = _SEPARATORS.sub("", number)
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise CardError("invalid_number", "number")
    brand = brand_of(digits)
    if brand is None:
        raise CardError("card_not_accepted", "number")
    if not luhn.is_valid(digits):
        raise CardError("invalid_number", "number")
    match = _EXPIRY.match(expiry)
    if match is None:
        raise CardError("invalid_expiry", "expiry")
    month, year = int(match.group(1)), int(match.group(2))
    if len(match.group(2)) == 2:
        year += 2000
    if not 1 <= month <= 12:
        raise CardError("invalid_expiry", "expiry")
    if (year, month) < (now.year, now.month):
        raise CardError("card_expired", "expiry")
    code = cvv.strip()
    if not code.isdigit() or len(code) != 3:
        raise CardError("invalid_cvv", "cvv")
    return Card(digits, brand, month, year, code)
