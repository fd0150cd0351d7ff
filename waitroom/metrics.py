"""Prometheus metrics of every process (prometheus-client), defined once, here.

Names are the contract with ``deploy/`` (dashboards, alert rules): ``tests/test_metrics.py``
checks that every metric an expression there names is one defined here. Labels are
bounded: events, routes, methods, codes, outcomes, activities of the catalogue — never a
ticket, a family or a cart.

Gateways run as several processes on one port: when ``PROMETHEUS_MULTIPROC_DIR`` is set
(``make run`` sets it), each process writes its samples there and any of them answers
``/metrics`` with the totals of all (``prometheus_client.multiprocess``). The other
services are one process each and serve ``/metrics`` on their own port
(``WAITROOM_*_METRICS_PORT``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# -- gateway ---------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "waitroom_http_requests", "HTTP requests answered, by route, method and status code",
    ["route", "method", "code"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "waitroom_http_request_duration_seconds", "Time to answer an HTTP request, by route",
    ["route"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
JOINS = Counter("waitroom_joins", "Tickets issued (new joins), by event", ["event"])
POLLS = Counter("waitroom_polls", "Polls answered 200 (each is a heartbeat), by event", ["event"])
ETA_ERROR = Histogram(
    "waitroom_eta_error_seconds",
    "Actual admission time minus the time predicted when the ticket first had a place in line"
    " (positive: later than we said), by event",
    ["event"],
    buckets=(-1800, -600, -300, -120, -60, -30, -10, 0, 10, 30, 60, 120, 300, 600, 1800),
)
REDIS_LATENCY = Histogram(
    "waitroom_redis_command_duration_seconds", "Time of a Redis round trip, by operation",
    ["operation"], buckets=LATENCY_BUCKETS,
)  # fmt: skip

# -- queue service ---------------------------------------------------------------------
LEADER = Gauge("waitroom_queue_leader", "1 while this queue-service process holds the lease")
DRAW_DURATION = Histogram(
    "waitroom_draw_duration_seconds", "Time the draw took (one per event)", ["event"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip

# -- every gRPC server ------------------------------------------------------------------
GRPC_HANDLED = Counter(
    "waitroom_grpc_server_handled", "gRPC calls completed, by service, method and status code",
    ["service", "method", "code"],
)  # fmt: skip
GRPC_IN_FLIGHT = Gauge(
    "waitroom_grpc_server_in_flight", "gRPC calls being served now, by method",
    ["service", "method"],
)  # fmt: skip
GRPC_LATENCY = Histogram(
    "waitroom_grpc_server_handling_seconds", "Time to complete a gRPC call, by method",
    ["service", "method"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
GRPC_WAY_IN = Histogram(
    "waitroom_grpc_server_way_in_seconds",
    "Time from the caller's send to the handler's start (the server's intake and event "
    "loop), by method; read off the caller's clock, for calls that carry it",
    ["service", "method"], buckets=LATENCY_BUCKETS,
)  # fmt: skip

# -- cart service ----------------------------------------------------------------------
CART_HOLDS = Counter(
    "waitroom_cart_holds", "Seats asked for, by outcome (held, full, refused)",
    ["event", "outcome"],
)  # fmt: skip
CART_EXTENSIONS = Counter("waitroom_cart_extensions", "Holds extended by 20 minutes", ["event"])
CART_EXPIRED = Counter(
    "waitroom_cart_holds_expired", "Carts whose hold ran out with seats in them", ["event"]
)
CHECKOUTS = Counter(
    "waitroom_checkouts", "Checkouts, by outcome (paid, confirmed, declined, pending)",
    ["event", "outcome"],
)  # fmt: skip
SEATS_LEFT = Gauge(
    "waitroom_seats_left", "Places neither registered nor held, by activity",
    ["event", "activity"],
)  # fmt: skip
SEATS_CAPACITY = Gauge("waitroom_seats_capacity", "Places of an activity", ["event", "activity"])
SEATS_REGISTERED = Gauge(
    "waitroom_seats_registered", "Places taken by confirmed registrations", ["event", "activity"]
)

# The confirmation emails' outbox (the same numbers from every cart replica: one ledger).
OUTBOX_PENDING = Gauge(
    "waitroom_outbox_pending", "Confirmation emails waiting to be sent (tried under 50 times)"
)
OUTBOX_GIVEN_UP = Gauge(
    "waitroom_outbox_given_up",
    "Confirmation emails the outbox stopped trying after 50 failures: to send by hand",
)

# -- payment adapter -------------------------------------------------------------------
PAYMENTS = Counter(
    "waitroom_payments", "Payments settled, by outcome (approved, declined, unknown, not_sent)",
    ["outcome"],
)  # fmt: skip
PROVIDER_LATENCY = Histogram(
    "waitroom_payment_provider_duration_seconds", "Time the provider took to answer",
    ["provider", "operation"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
PAYMENTS_IN_FLIGHT = Gauge(
    "waitroom_payments_in_flight", "Charges sent to the provider and not answered yet"
)
PAYMENTS_UNKNOWN = Gauge(
    "waitroom_payments_unknown", "Payments whose outcome is not known yet (pending or unknown)"
)
PAYMENTS_UNKNOWN_OLDEST = Gauge(
    "waitroom_payments_unknown_oldest_seconds",
    "Age of the oldest payment whose outcome is not known yet (0: none)",
)


@contextlib.contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    """Observe the time the block takes (exceptions included) in ``histogram``."""
    child = histogram.labels(*labels) if labels else histogram
    started = time.perf_counter()
    try:
        yield
    finally:
        child.observe(time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """This process's metrics (all gateway processes' in multi-process mode), and the
    content type to send them with."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve(host: str, port: int) -> None:
    """``/metrics`` on ``host:port`` from a background thread (gRPC services); 0 = none.
    A port already taken is logged, not fatal: the service itself must keep serving."""
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics not served on %s:%d: %s", host, port, exc)


def calls_served(service: str) -> int:
    """gRPC calls of ``service`` this process completed (any status)."""
    return int(
        sum(
            sample.value
            for metric in GRPC_HANDLED.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels.get("service") == service
        )
    )
