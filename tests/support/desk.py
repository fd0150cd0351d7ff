"""A registration desk on a real database for tests that call the cart rules directly:
a clock the test moves, a payment port that answers as told and counts its charges, and
families made in bulk."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service.desk import Desk
from cart_service.ledger import families, members
from cart_service.payment_port import CardInput, PaymentResult, PaymentUnreachable

NOW = 1_800_000_000_000


class Clock:
    """Milliseconds that move only when the test says so."""

    def __init__(self, ms: int = NOW) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@dataclass
class ScriptedPayments:
    """The payment port, answering each charge with the next scripted result (approved
    when the script is empty); ``unreachable`` raises as a lost answer would. Lookups
    answer from what was charged under the key."""

    script: deque[PaymentResult | type[PaymentUnreachable]] = field(default_factory=deque)
    charged: dict[str, PaymentResult] = field(default_factory=dict)
    charges: list[tuple[str, str, int]] = field(default_factory=list)
    refunds: dict[str, tuple[str, int]] = field(default_factory=dict)

    async def charge(
        self, key: str, cart_id: str, amount_cents: int, currency: str, card: CardInput, d: str
    ) -> PaymentResult:
        self.charges.append((key, cart_id, amount_cents))
        answer = self.script.popleft() if self.script else PaymentResult("approved", "", "visa")
        if isinstance(answer, type):
            self.charged[key] = PaymentResult("approved", "", "visa", "4242")
            raise answer("lost")
        self.charged[key] = answer
        return answer

    async def lookup(self, key: str) -> PaymentResult | None:
        return self.charged.get(key)

    async def refund(self, key: str, payment_key: str, amount_cents: int) -> str:
        self.refunds.setdefault(key, (payment_key, amount_cents))
        return "approved"


def make_desk(engine: AsyncEngine, payments: ScriptedPayments | None = None) -> Desk:
    return Desk(engine, payments or ScriptedPayments(), Clock(), hold_ms=60_000, lock_ms=30_000)


def clock_of(desk: Desk) -> Clock:
    clock = desk.clock_ms
    assert isinstance(clock, Clock)
    return clock


async def add_families(engine: AsyncEngine, n: int) -> None:
    """Families 900000.. with phones 418 555-0000.., each with an adult ``A<i>`` and a
    child ``K<i>`` (8 in the summer of 2027, class level 2)."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(families),
            [
                {"client_number": f"9{i:05d}", "principal_phone": f"+1418555{i:04d}"}
                for i in range(n)
            ],
        )
        people = []
        for i in range(n):
            people += [
                {"id": f"A{i}", "client_number": f"9{i:05d}", "first_name": "Adult",
                 "last_name": str(i), "birth_date": date(1985, 1, 1),
                 "relationship": "responsible", "class_level": None},
                {"id": f"K{i}", "client_number": f"9{i:05d}", "first_name": "Kid",
                 "last_name": str(i), "birth_date": date(2019, 3, 1),
                 "relationship": "child", "class_level": 2},
            ]  # fmt: skip
        await conn.execute(insert(members), people)
