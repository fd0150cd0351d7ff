"""The gateway's own metrics, cheap enough for the poll path.

A poll counts three things (the request, its latency, the event's polls). Done through
prometheus_client each is a lock and, for the latency, a walk over the buckets: about a
tenth of a poll's cost (``make bench``: polls 0.73 of a bare handler with them, 0.83
without). So they are tallied here in plain dicts, bucketed with ``bisect``, and added to
Prometheus once a second (``run``) and before every scrape (``flush``): the totals are
exact, only up to a second late.
"""

from __future__ import annotations

import asyncio
import bisect
import logging

from prometheus_client import Counter, Histogram

from waitroom.aio import pause
from waitroom.metrics import ETA_ERROR, HTTP_LATENCY, HTTP_REQUESTS, JOINS, LATENCY_BUCKETS, POLLS

log = logging.getLogger(__name__)

PREDICTIONS_MAX = 500_000
FLUSH_S = 1.0

_BOUNDS = tuple(float(b) for b in LATENCY_BUCKETS)
_counts: dict[Counter, int] = {}  # label child -> increments not yet added
_latencies: dict[Histogram, list[float]] = {}  # label child -> [n per bucket..., +Inf, sum]


class _PerEvent:
    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[str, Counter] = {}

    def inc(self, event_id: str) -> None:
        child = self._children.get(event_id)
        if child is None:
            child = self._children[event_id] = self._counter.labels(event_id)
        _counts[child] = _counts.get(child, 0) + 1


polls = _PerEvent(POLLS)
joins = _PerEvent(JOINS)
_requests: dict[tuple[str, str, int], tuple[Counter, list[float]]] = {}


def request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    key = (route, method, status)
    pair = _requests.get(key)
    if pair is None:
        latency = HTTP_LATENCY.labels(route)
        tally = _latencies.get(latency)
        if tally is None:
            tally = _latencies[latency] = [0.0] * (len(_BOUNDS) + 2)
        pair = _requests[key] = (HTTP_REQUESTS.labels(route, method, str(status)), tally)
    counter, tally = pair
    _counts[counter] = _counts.get(counter, 0) + 1
    tally[bisect.bisect_left(_BOUNDS, seconds)] += 1
    tally[-1] += seconds


def flush() -> None:
    """Add what was tallied since the last flush to the Prometheus metrics."""
    for counter, n in _counts.items():
        counter.inc(n)
    _counts.clear()
    for histogram, tally in _latencies.items():
        if any(tally):
            _add_observations(histogram, tally)
            tally[:] = [0.0] * len(tally)


def _add_observations(histogram: Histogram, tally: list[float]) -> None:
    """Add bucket counts and a sum to ``histogram`` at once, through the attributes its
    ``observe`` uses (prometheus_client is pinned; tests/test_metrics.py checks the result
    against ``observe``). Should they change: one ``observe`` per tallied request, at its
    bucket's bound (counts exact, the sum then approximate)."""
    buckets, total = getattr(histogram, "_buckets", None), getattr(histogram, "_sum", None)
    if buckets is not None and total is not None and len(buckets) == len(tally) - 1:
        for value, n in zip(buckets, tally[:-1], strict=True):
            if n:
                value.inc(n)
        total.inc(tally[-1])
        return
    log.warning("prometheus_client's Histogram changed: latencies added one by one")
    for bound, n in zip((*_BOUNDS, _BOUNDS[-1]), tally[:-1], strict=True):
        for _ in range(int(n)):
            histogram.observe(bound)


async def run(stop: asyncio.Event) -> None:
    """Flush every ``FLUSH_S`` until ``stop``, and once more then."""
    while not stop.is_set():
        await pause(stop, FLUSH_S)
        flush()


class EtaErrors:
    """How wrong our estimates are: the admission time predicted when a ticket first had a
    place in line, against the time it was admitted (both as this gateway saw them)."""

    def __init__(self) -> None:
        self._predicted: dict[tuple[str, int], int] = {}

    def predicted(self, event_id: str, arrival: int, admission_ms: int) -> None:
        key = (event_id, arrival)
        if key in self._predicted:
            return
        if len(self._predicted) >= PREDICTIONS_MAX:
            self._predicted.clear()
        self._predicted[key] = admission_ms

    def admitted(self, event_id: str, arrival: int, admitted_at_ms: int) -> None:
        predicted = self._predicted.pop((event_id, arrival), None)
        if predicted is not None:
            ETA_ERROR.labels(event_id).observe((admitted_at_ms - predicted) / 1000)


eta_errors = EtaErrors()
