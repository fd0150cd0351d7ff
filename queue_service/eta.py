"""Measures the real outflow and the share of skipped tickets: the basis of every ETA."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

RATE_WINDOW_S = 60.0
SKIP_WINDOW_S = 300.0
MIN_BACKLOG_S = 5.0
MIN_SKIP_SAMPLES = 20


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    seconds: float
    admitted: int
    skipped: int
    backlogged: bool


class OutflowMeter:
    """Admissions per second while people were waiting, and skips per line served.

    Only time when the line was not empty and admission was running counts toward the
    rate: an empty line says nothing about how fast it would move.
    """

    def __init__(self) -> None:
        self._ticks: deque[Tick] = deque()
        self._totals: deque[tuple[float, int]] = deque()

    def record(self, tick: Tick) -> None:
        self._ticks.append(tick)
        while self._ticks and self._ticks[0].at < tick.at - SKIP_WINDOW_S:
            self._ticks.popleft()

    def record_total(self, at: float, admitted_total: int) -> None:
        """Sample the event's all-time admitted counter (joins straight in included)."""
        self._totals.append((at, admitted_total))
        while len(self._totals) > 1 and self._totals[1][0] <= at - RATE_WINDOW_S:
            self._totals.popleft()

    def admitted_last_minute(self) -> int:
        if not self._totals:
            return 0
        return self._totals[-1][1] - self._totals[0][1]

    def rate_per_s(self, now: float) -> float | None:
        """Measured admissions per second over the last minute of backlog; None if too little."""
        seconds = admitted = 0.0
        for tick in self._ticks:
            if tick.at >= now - RATE_WINDOW_S and tick.backlogged:
                seconds += tick.seconds
                admitted += tick.admitted
        if seconds < MIN_BACKLOG_S:
            return None
        return admitted / seconds

    def skip_share(self) -> float:
        admitted = sum(t.admitted for t in self._ticks)
        skipped = sum(t.skipped for t in self._ticks)
        if admitted + skipped < MIN_SKIP_SAMPLES:
            return 0.0
        return skipped / (admitted + skipped)


SESSION_WINDOW_S = 300.0
MIN_SESSION_SAMPLES = 20


class SessionMeter:
    """How long admitted sessions last, from the event's active set sampled each second.

    A session seen active and then gone (ended by the parent, by payment, or by its
    expiry) has lasted from its admission (its expiry score less the TTL) until now.
    The mean over the last five minutes, once twenty have ended, is what the ETA needs
    when ``max_active`` binds: then the door lets in ``max_active / mean`` per second,
    whatever the configured rate.
    """

    def __init__(self) -> None:
        self._admitted_ms: dict[str, int] = {}
        self._ended: deque[tuple[float, float]] = deque()  # (at, seconds)

    def sample(self, at: float, now_ms: int, active: dict[str, int], ttl_ms: int) -> None:
        """``active``: arrival -> expiry score, as the active set holds them now."""
        for arrival, expires_ms in active.items():
            self._admitted_ms.setdefault(arrival, int(expires_ms) - ttl_ms)
        for arrival in [a for a in self._admitted_ms if a not in active]:
            admitted_ms = self._admitted_ms.pop(arrival)
            self._ended.append((at, max(0.0, (now_ms - admitted_ms) / 1000)))
        while self._ended and self._ended[0][0] < at - SESSION_WINDOW_S:
            self._ended.popleft()

    def mean_s(self) -> float | None:
        """Mean length of the sessions that ended lately; None while too few have."""
        if len(self._ended) < MIN_SESSION_SAMPLES:
            return None
        return sum(seconds for _, seconds in self._ended) / len(self._ended)
