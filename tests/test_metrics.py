"""/metrics of every process: the names deploy/ relies on, per-event series, and correct
totals when several gateway processes share a port."""

from __future__ import annotations

import asyncio
import bisect
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from gateway import observe
from queue_service.metrics import EventCollector
from queue_service.service import QueueService
from tests.conftest import create_event, join, operator, poll, statuses, wait_for
from tests.registration import registration_stack
from tests.support.gateway_process import gateway_env
from waitroom.metrics import LATENCY_BUCKETS
from waitroom.redis_server import free_port
from waitroom.rpc import SENT_AT, bearer_metadata, sent_at_s
from waitroom.settings import Settings

Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_gateway_and_queue_metrics_per_event(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(client, redis, opens_in=0.3, admit_per_minute=6000, max_active=2)
    tickets = [await join(client) for _ in range(4)]

    async def drawn() -> bool:
        return all(s in ("waiting", "admitted") for s in await statuses(client, tickets))

    await wait_for(drawn)
    for t in tickets:
        await poll(client, t)
    text = await (await operator(client).get("/metrics")).text()
    assert value(text, "waitroom_joins_total", event="camp") >= 4
    assert value(text, "waitroom_polls_total", event="camp") >= 4
    poll_route = "/api/v1/events/{event_id}/tickets/{ticket_id}"
    assert value(text, "waitroom_http_requests_total", route=poll_route, method="GET", code="200")
    assert value(text, "waitroom_http_request_duration_seconds_count", route=poll_route) >= 4
    assert value(text, "waitroom_redis_command_duration_seconds_count", operation="join") >= 1
    # The queue service's per-event series, read from the leader's views.
    registry = CollectorRegistry()
    registry.register(EventCollector(leader.store))

    async def two_admitted() -> bool:
        exported = generate_latest(registry).decode()
        return value(exported, "waitroom_active_sessions", event="camp") == 2

    await wait_for(two_admitted)
    exported = generate_latest(registry).decode()
    assert value(exported, "waitroom_tickets", event="camp", status="waiting") == 2
    assert value(exported, "waitroom_max_active", event="camp") == 2
    assert value(exported, "waitroom_admit_per_minute_configured", event="camp") == 6000
    assert value(exported, "waitroom_admitted_total", event="camp") == 2
    assert value(exported, "waitroom_event_state", event="camp", state="open") == 1


async def test_registration_metrics(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    from prometheus_client import REGISTRY

    before = generate_latest(REGISTRY).decode()
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    async with registration_stack(settings, redis, url, aiohttp_client) as s:
        headers = await s.admitted()
        await s.call(
            "POST", "/cart/family", headers, {"client_number": "100234", "phone": "4188392002"}
        )
        await s.call(
            "POST",
            "/cart/items",
            headers,
            {"participant": "P104", "activity_ids": ["b56-w1", "a78-w1"]},
        )

        async def seats_published() -> bool:
            text = generate_latest(REGISTRY).decode()
            return value(text, "waitroom_seats_left", event="camp", activity="b56-w1") == 0

        await wait_for(seats_published)
    after = generate_latest(REGISTRY).decode()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("waitroom_cart_holds_total", event="camp", outcome="held") == 1
    assert grew("waitroom_cart_holds_total", event="camp", outcome="refused") == 1
    assert value(after, "waitroom_seats_capacity", event="camp", activity="b56-w1") == 1
    method = {"service": "waitroom.cart.v1.CartService", "method": "AddItems"}
    assert grew("waitroom_grpc_server_handled_total", **method, code="OK") == 1
    assert grew("waitroom_grpc_server_handling_seconds_count", **method) == 1
    # The gateway says when it sent the call: the cart service times the call's way in.
    assert grew("waitroom_grpc_server_way_in_seconds_count", **method) == 1
    assert 0 <= grew("waitroom_grpc_server_way_in_seconds_sum", **method) < 60


async def test_several_gateway_processes_report_the_totals_of_all(
    settings: Settings, redis: Redis, leader: QueueService, tmp_path: Path, client: Client
) -> None:
    await create_event(client, redis, opens_in=600, closes_in=3600)
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **gateway_env(settings, port),
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    base = f"http://127.0.0.1:{port}"
    operator_base = f"http://127.0.0.1:{env['WAITROOM_ADMIN_PORT']}"
    try:
        # A new connection per request: the kernel spreads them over both processes.
        async def fresh(method: str, path: str) -> tuple[int, str]:
            connector = aiohttp.TCPConnector(force_close=True)
            url = (operator_base if path == "/metrics" else base) + path
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.request(method, url) as resp,
            ):
                return resp.status, await resp.text()

        async def up() -> bool:
            try:
                return (await fresh("GET", "/healthz"))[0] == 200
            except aiohttp.ClientError:
                return False

        await wait_for(up, 20)
        if shutil.which("ss"):
            backlogs = _backlogs(port)  # the second process may not listen yet
            assert backlogs and set(backlogs) == {min(settings.http_backlog, _somaxconn())}
        joins = 40
        statuses = [(await fresh("POST", "/api/v1/events/camp/tickets"))[0] for _ in range(joins)]
        assert statuses == [201] * joins
        writers = {path.name.split("_")[-1] for path in metrics_dir.glob("*.db")}
        assert len(writers) >= 2, writers  # both processes served (and wrote) some

        async def total_reported() -> bool:  # each process adds its tallies every second
            text = (await fresh("GET", "/metrics"))[1]
            return value(text, "waitroom_joins_total", event="camp") == joins

        await wait_for(total_reported, 5)
        for _ in range(6):  # whichever process answers, it reports the total
            status, text = await fresh("GET", "/metrics")
            assert status == 200
            assert value(text, "waitroom_joins_total", event="camp") == joins
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _backlogs(port: int) -> list[int]:
    """The backlog of each socket listening on ``port`` (a listening socket's Send-Q)."""
    listing = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [int(line.split()[2]) for line in listing.splitlines()]


def _somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


def test_tallied_latencies_equal_observed_ones() -> None:
    """The gateway tallies requests and latencies between flushes (gateway/observe.py);
    once flushed, the histogram holds exactly what ``observe`` would have put there."""
    registry = CollectorRegistry()
    tallied = Histogram("t", "tallied", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    observed = Histogram("o", "observed", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    requests = Counter("r", "requests", ["route"], registry=registry)
    seconds = [0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.2, 0.9999, 7.0, 11.0, 0.0005]
    route = "/tallied"
    latency, counter = tallied.labels(route), requests.labels(route)
    pending = [0.0] * (len(LATENCY_BUCKETS) + 2)
    for s in seconds:
        pending[bisect.bisect_left(observe._BOUNDS, s)] += 1
        pending[-1] += s
        observed.labels(route).observe(s)
    observe._latencies[latency] = pending
    observe._counts[counter] = len(seconds)
    try:
        observe.flush()
    finally:
        observe._latencies.pop(latency)
    text = generate_latest(registry).decode()
    for bound in (*LATENCY_BUCKETS, "+Inf"):
        le = str(float(bound)) if bound != "+Inf" else bound
        assert value(text, "t_bucket", route=route, le=le) == value(
            text, "o_bucket", route=route, le=le
        ), le
    assert value(text, "t_count", route=route) == len(seconds)
    assert value(text, "t_sum", route=route) == value(text, "o_sum", route=route)
    assert value(text, "r_total", route=route) == len(seconds)
    assert not observe._counts and not any(pending)


def test_a_call_says_when_it_was_sent_and_garbage_is_ignored() -> None:
    sent = dict(bearer_metadata("token"))[SENT_AT]
    assert abs(sent_at_s([(SENT_AT, sent)]) - time.time()) < 60  # type: ignore[operator]
    assert sent_at_s([("authorization", "Bearer x")]) is None
    assert sent_at_s([(SENT_AT, "soon")]) is None
    assert sent_at_s(None) is None
