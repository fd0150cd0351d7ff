"""Times and money as the pages and emails show them: times in the event's time zone
(RFC 3339 with its offset), money in integer cents shown the French or the English way."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def iso_at(ms: int, timezone: str) -> str:
    """RFC 3339 in ``timezone`` (``2027-06-01T19:20:00-04:00``); empty for 0."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone)).isoformat(timespec="seconds")


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
