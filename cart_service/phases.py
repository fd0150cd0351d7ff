"""A "requests" event's phases: who may order when (P'tit Victor).

Each phase has a window and the families it is for: "priority" (the association's
members of the past season and the families who pre-registered a child), "new" (the
other families) or "everyone", and may be for some class levels only (new families
invited by class level). Read by the orders (``orders``), the allocation and the cart's
snapshot (a family outside every open phase is told when its own opens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cart_service.ledger import families, phases

PHASE_FAMILIES = ("priority", "new", "everyone")


@dataclass(frozen=True, slots=True)
class Phase:
    rank: int
    name: str
    opens_at_ms: int
    closes_at_ms: int
    families: str  # priority | new | everyone
    class_min: int | None = None
    class_max: int | None = None

    def admits(self, priority: bool, class_level: int | None) -> bool:
        """Whether a child of this class level, of a priority family or not, orders here."""
        if self.families == "priority" and not priority:
            return False
        if self.families == "new" and priority:
            return False
        if self.class_min is None and self.class_max is None:
            return True
        low = self.class_min if self.class_min is not None else 0
        high = self.class_max if self.class_max is not None else 12
        return class_level is not None and low <= class_level <= high

    def open_at(self, now_ms: int) -> bool:
        return self.opens_at_ms <= now_ms < self.closes_at_ms


def phase_of(row: Any) -> Phase:
    return Phase(
        int(row.rank),
        row.name,
        int(row.opens_at_ms),
        int(row.closes_at_ms),
        row.families,
        row.class_min,
        row.class_max,
    )


async def phases_of(conn: AsyncConnection, event_id: str) -> list[Phase]:
    """The event's phases in rank order (none: anyone validated orders at any time)."""
    rows = await conn.execute(
        select(phases).where(phases.c.event_id == event_id).order_by(phases.c.rank)
    )
    return [phase_of(row) for row in rows.all()]


async def priority_family(conn: AsyncConnection, client_number: str) -> bool:
    """A member of the past season, or a family that pre-registered a child."""
    row = (
        await conn.execute(
            select(families.c.member, families.c.preregistered).where(
                families.c.client_number == client_number
            )
        )
    ).one_or_none()
    return row is not None and bool(row.member or row.preregistered)


def next_opening(found: list[Phase], priority: bool, now_ms: int) -> int | None:
    """For a family (its children's class levels aside): None when a phase it may order
    in is open now, else when the next one opens (0: none is to come)."""
    theirs = [
        p for p in found if p.families == "everyone" or (p.families == "priority") == priority
    ]
    if any(p.open_at(now_ms) for p in theirs):
        return None
    later = [p.opens_at_ms for p in theirs if p.opens_at_ms > now_ms]
    return min(later) if later else 0
