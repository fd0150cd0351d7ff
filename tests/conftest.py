"""Fixtures: a real redis-server on a free port, a real gateway app and a queue leader."""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service.ledger import create_schema
from gateway import fastpath, malformed
from gateway.app import create_app, create_operator_app
from queue_service.service import QueueService
from tests.support.postgres import drop, fresh_database
from tests.support.tools import tool
from waitroom.db import make_engine
from waitroom.draw import DrawnOrder
from waitroom.redis_cluster import RedisClusterServer
from waitroom.redis_conn import make_redis
from waitroom.redis_server import RedisServer
from waitroom.schedule import EventConfig
from waitroom.scripts import register_scripts
from waitroom.settings import Settings
from waitroom.tokens import new_signing_key
from waitroom.view import EventView

ADMIN_TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session", params=["single", "cluster"])
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer | RedisClusterServer]:
    """The Redis of the session, twice: one redis-server (fsync always, so a restart loses
    nothing), then a Redis Cluster of six nodes (three masters, three replicas). Every
    test that talks to Redis runs against both."""
    server: RedisServer | RedisClusterServer
    if request.param == "cluster":
        tool("redis-cli", "Debian's redis-tools")  # makes the cluster
        server = RedisClusterServer(tmp_path_factory.mktemp("redis-cluster"))
    else:
        server = RedisServer(tmp_path_factory.mktemp("redis"), fsync="always")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_server: RedisServer | RedisClusterServer) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        redis_cluster=redis_server.cluster,
        admin_token=ADMIN_TOKEN,
        ticket_secret=secrets.token_urlsafe(32),
        token_signing_key=new_signing_key(),
        refresh_interval_s=0.05,
        heartbeat_flush_s=0.1,
        tick_s=0.05,
        lease_ttl_ms=1000,
        join_limit=100_000,
        queue_grpc_port=0,
        queue_metrics_port=0,
        cart_metrics_port=0,
        payment_metrics_port=0,
    )


@pytest.fixture
async def redis(redis_server: RedisServer | RedisClusterServer) -> AsyncIterator[Redis]:
    client = make_redis(redis_server.url, cluster=redis_server.cluster)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def client(
    settings: Settings, redis: Redis, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> TestClient[Any, Any]:
    return await gateway_client(aiohttp_client, settings)


async def gateway_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], settings: Settings
) -> TestClient[Any, Any]:
    """A real gateway as production runs it: the public application with the poll fast
    path, and its operator listener (``operator(client)``)."""
    public_app = create_app(settings)
    client = await aiohttp_client(public_app)
    runner = client.server.runner
    assert isinstance(runner, web.AppRunner)
    fastpath.install(runner)
    malformed.install(runner)
    _OPERATORS[client] = await aiohttp_client(create_operator_app(public_app))
    return client


_OPERATORS: weakref.WeakKeyDictionary[TestClient[Any, Any], TestClient[Any, Any]] = (
    weakref.WeakKeyDictionary()
)


def operator(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """The operator listener (operator API, /metrics) of the gateway ``client`` talks to."""
    return _OPERATORS[client]


@pytest.fixture
async def leader(settings: Settings, redis: Redis) -> AsyncIterator[QueueService]:
    """A queue-service loop in this process (the leader, as it is alone)."""
    service = QueueService(
        redis, register_scripts(redis), "test-leader", settings.lease_ttl_ms, settings.tick_s
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    yield service
    stop.set()
    await task


async def redis_now(redis: Redis) -> datetime:
    seconds, micros = await redis.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


async def schedule(
    redis: Redis,
    *,
    wro_in: float = -1.0,
    opens_in: float = 1.5,
    closes_in: float = 3600.0,
    **rules: object,
) -> dict[str, object]:
    """An event body with times relative to the Redis clock (seconds from now)."""
    now = await redis_now(redis)
    body: dict[str, object] = {
        "waiting_room_opens_at": (now + timedelta(seconds=wro_in)).isoformat(),
        "opens_at": (now + timedelta(seconds=opens_in)).isoformat(),
        "closes_at": (now + timedelta(seconds=closes_in)).isoformat(),
        "admit_per_minute": 600,
        "max_active": 1000,
    }
    body.update(rules)
    return body


async def create_event(
    client: TestClient[Any, Any], redis: Redis, event_id: str = "camp", **kwargs: Any
) -> dict[str, Any]:
    resp = await operator(client).put(
        f"/admin/v1/events/{event_id}", json=await schedule(redis, **kwargs), headers=AUTH
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def join(client: TestClient[Any, Any], event_id: str = "camp") -> dict[str, Any]:
    """Join as a new browser (no cookie)."""
    client.session.cookie_jar.clear()
    resp = await client.post(f"/api/v1/events/{event_id}/tickets")
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    client.session.cookie_jar.clear()
    return body


async def poll(client: TestClient[Any, Any], ticket: dict[str, Any]) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/events/{ticket['event_id']}/tickets/{ticket['ticket_id']}")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def statuses(client: TestClient[Any, Any], tickets: list[dict[str, Any]]) -> list[str]:
    return [str((await poll(client, t))["status"]) for t in tickets]


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, every_s: float = 0.05
) -> None:
    """Wait until ``check()`` is true; fail the test with a clear message if it never is."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def drawn_view(*, opens_ms: int, prequeue: int, seq: int, rate: int = 60) -> EventView:
    """An in-memory view of a drawn event with a FIFO pre-queue, for tests without Redis."""
    config = EventConfig(
        event_id="camp",
        wro_ms=0,
        opens_ms=opens_ms,
        closes_ms=opens_ms * 10 + 10**13,
        timezone="UTC",
        admit_per_minute=rate,
        max_active=100,
        session_ttl_ms=60_000,
        heartbeat_timeout_ms=120_000,
        prequeue_order="fifo",
        paused=False,
        salt="s",
    )
    view = EventView("camp", config)
    view.seq = seq
    view.set_order(DrawnOrder.compute(b"\0" * 32, "camp", prequeue, fifo=True))
    return view


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty ledger database, once an SQLite file and once a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
        return
    url = await fresh_database()
    yield url
    await drop(url)


@pytest.fixture
async def ledger_engine(ledger_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the empty ledger, its tables created."""
    pool = {"pool_size": 20, "max_overflow": 0} if ledger_url.startswith("postgresql") else {}
    engine = make_engine(ledger_url, **pool)
    await create_schema(engine)
    yield engine
    await engine.dispose()
