"""The gateway's own metrics, cheap enough for the poll path: label children are looked
up once and kept, so counting a poll is a dict lookup and an increment."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from waitroom.metrics import ETA_ERROR, HTTP_LATENCY, HTTP_REQUESTS, JOINS, POLLS

PREDICTIONS_MAX = 500_000


class _PerEvent:
    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[str, Counter] = {}

    def inc(self, event_id: str) -> None:
        child = self._children.get(event_id)
        if child is None:
            child = self._children[event_id] = self._counter.labels(event_id)
        child.inc()


polls = _PerEvent(POLLS)
joins = _PerEvent(JOINS)
_requests: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    key = (route, method, status)
    pair = _requests.get(key)
    if pair is None:
        pair = _requests[key] = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_LATENCY.labels(route),
        )
    pair[0].inc()
    pair[1].observe(seconds)


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
