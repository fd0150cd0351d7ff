"""Measures the real outflow and the share of skipped tickets: the basis of every ETA."""

from __future__ import annotations

import math
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
    rate: an empty line says nothing about how fast it would move. Nor does a gap between
    ticks longer than ``gap_s`` (Redis failing over, the leader stalled), nor the tick
    that ends it: that tick spends the credit the bucket earned during the gap, and the
    gap says how long an outage lasted, not how fast the line moves while the door works.
    Counted, a three-second failover just after the draw made the published rate 25 %
    too slow for the next seven seconds, and every ETA given then as much too long.
    """

    def __init__(self, gap_s: float) -> None:
        """``gap_s``: see ``queue_service.outflow.gap_for``."""
        self.gap_s = gap_s
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
            if tick.at >= now - RATE_WINDOW_S and tick.backlogged and tick.seconds <= self.gap_s:
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
# The mean is trusted once the survival curve has fallen to this share at the longest
# length seen: before, the sessions that ended are the short ones, and the lengths seen
# so far say more about who ended first than about how long sessions last.
MAX_OPEN_SHARE = 0.25


class SessionMeter:
    """How long admitted sessions last, from the event's active set sampled each second.

    A session seen active and then gone (ended by the parent, by payment, or by its
    expiry) has lasted from its admission (its expiry score less the TTL) until it went.
    What the ETA needs when ``max_active`` binds is the mean length: then the door lets
    in ``max_active / mean`` per second, whatever the configured rate (Little's law).

    The mean is estimated over the sessions admitted in the last five minutes, the open
    ones counted as "lasted at least this long" (Kaplan-Meier), and completed past the
    longest length seen by an exponential tail (Brown, Hollander and Korwar). At the
    start of a night, the first sessions to end are the shortest: the plain mean of
    those that ended would promise a door twice as fast as it is.
    """

    def __init__(self) -> None:
        self._admitted_ms: dict[str, int] = {}
        self._ended: deque[tuple[int, float]] = deque()  # (admitted ms, seconds)
        self._mean_s: float | None = None

    def sample(self, now_ms: int, active: dict[str, int], ttl_ms: int) -> None:
        """``active``: arrival -> expiry score, as the active set holds them now."""
        for arrival, expires_ms in active.items():
            self._admitted_ms.setdefault(arrival, int(expires_ms) - ttl_ms)
        for arrival in [a for a in self._admitted_ms if a not in active]:
            admitted_ms = self._admitted_ms.pop(arrival)
            self._ended.append((admitted_ms, max(0.0, (now_ms - admitted_ms) / 1000)))
        since_ms = now_ms - SESSION_WINDOW_S * 1000
        while self._ended and self._ended[0][0] < since_ms:
            self._ended.popleft()
        ended = [seconds for admitted_ms, seconds in self._ended if admitted_ms >= since_ms]
        if len(ended) < MIN_SESSION_SAMPLES:
            self._mean_s = None
            return
        still_open = [
            (now_ms - admitted_ms) / 1000
            for admitted_ms in self._admitted_ms.values()
            if admitted_ms >= since_ms
        ]
        self._mean_s = kaplan_meier_mean(ended, still_open, MAX_OPEN_SHARE)

    def mean_s(self) -> float | None:
        """Expected length of a session, as of the last sample; None while unknown."""
        return self._mean_s


def kaplan_meier_mean(
    ended: list[float], still_open: list[float], max_open_share: float
) -> float | None:
    """Mean length from lengths that ended and ages of those still open (censored).

    The area under the Kaplan-Meier survival curve up to the longest length seen, plus
    an exponential tail through the curve's last point (S * t / -ln S). None while the
    curve ends above ``max_open_share``."""
    observed = sorted([(s, 1) for s in ended] + [(s, 0) for s in still_open])
    at_risk = len(observed)
    survival, area, previous = 1.0, 0.0, 0.0
    i = 0
    while i < len(observed):
        length = observed[i][0]
        area += survival * (length - previous)
        previous = length
        ended_here = at_here = 0
        while i < len(observed) and observed[i][0] == length:
            ended_here += observed[i][1]
            at_here += 1
            i += 1
        survival *= 1 - ended_here / at_risk
        at_risk -= at_here
    if survival > max_open_share:
        return None
    if 0 < survival < 1 and previous > 0:
        area += survival * previous / -math.log(survival)
    return area
