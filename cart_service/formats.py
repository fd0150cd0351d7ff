"""Money as the pages and emails show it: integer cents, the French or the English way.
(Times: ``waitroom.schedule.iso_at``, in the event's time zone.)"""

from __future__ import annotations


def money_fr(cents: int) -> str:
    """``1 234,50 $``"""
    whole, part = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    return f"{sign}{whole:,}".replace(",", "\u00a0") + f",{part:02d}\u00a0$"


def money_en(cents: int) -> str:
    """``$1,234.50``"""
    whole, part = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    return f"{sign}${whole:,}.{part:02d}"
