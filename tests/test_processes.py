"""Real processes: queue services racing and failing over, and a Redis restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.conftest import (
    AUTH,
    create_event,
    gateway_client,
    join,
    operator,
    poll,
    statuses,
    wait_for,
)
from tests.support.gateway_process import shared_env
from waitroom import audit, keys
from waitroom.redis_server import RedisServer
from waitroom.scripts import register_scripts
from waitroom.settings import Settings

Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parent.parent


def _env(settings: Settings, name: str) -> dict[str, str]:
    return {
        **os.environ,
        **shared_env(settings),
        "WAITROOM_QUEUE_GRPC_PORT": "0",
        "WAITROOM_QUEUE_METRICS_PORT": "0",
        "WAITROOM_LEASE_TTL_MS": "1000",
        "WAITROOM_TICK_S": "0.05",
        "WAITROOM_INSTANCE": name,
    }


@pytest.fixture
def queue_processes(settings: Settings) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "queue_service"],
            env=_env(settings, name),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("qs-a", "qs-b")
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _leader(redis: Redis) -> str:
    return str(await redis.get(keys.LEADER) or "")


async def test_two_queue_services_draw_once_and_fail_over(
    client: Client, redis: Redis, queue_processes: dict[str, subprocess.Popen[bytes]]
) -> None:
    await create_event(client, redis, opens_in=2.0, admit_per_minute=1200, max_active=10_000)
    tickets = [await join(client) for _ in range(40)]

    async def has_leader() -> bool:
        return bool(await _leader(redis))

    await wait_for(has_leader, 10)
    first = (await _leader(redis)).split(":", 1)[1]

    async def some_admitted() -> bool:
        stats = await (
            await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)
        ).json()
        return int(stats["admitted_total"]) >= 10

    await wait_for(some_admitted, 15)
    queue_processes[first].kill()  # the leader dies mid-outflow, without a goodbye

    async def other_leads() -> bool:
        value = await _leader(redis)
        return bool(value) and not value.endswith(":" + first)

    await wait_for(other_leads, 5)  # the lease (1 s) expires and the standby takes over

    async def all_admitted() -> bool:
        return all(s == "admitted" for s in await statuses(client, tickets))

    await wait_for(all_admitted, 20)
    record = await audit.load_record(redis, "camp")
    lines = [line for line, _, _ in record.served]
    assert lines == list(range(1, 41))  # every line served exactly once, in order
    assert sorted(arrival for _, arrival, _ in record.served) == list(range(1, 41))
    assert audit.verify(record).ok
    assert record.prequeue == 40


async def test_concurrent_draw_calls_draw_exactly_once(client: Client, redis: Redis) -> None:
    await create_event(client, redis, opens_in=0.3)
    await join(client)
    scripts = register_scripts(redis)
    k = keys.EventKeys("camp")
    await asyncio.sleep(0.4)
    epoch = int(await redis.incr(keys.LEADER_EPOCH))
    results = await asyncio.gather(
        *(scripts.draw(keys=[k.cfg, k.draw, k.seq, k.fence], args=[epoch]) for _ in range(20))
    )
    assert sorted(int(r) for r in results) == [1] + [2] * 19
    # A stale leader (older epoch) is fenced off.
    with pytest.raises(Exception, match="STALE_LEADER"):
        await scripts.draw(keys=[k.cfg, k.draw, k.seq, k.fence], args=[epoch - 1])


async def test_redis_restart_keeps_every_place(
    settings: Settings, tmp_path: Path, aiohttp_client: Any
) -> None:
    from queue_service.service import QueueService
    from waitroom.redis_conn import make_redis

    server = RedisServer(tmp_path / "redis", fsync="always")
    server.start()
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    redis = make_redis(server.url)
    try:
        local = settings.model_copy(update={"redis_url": server.url, "redis_cluster": False})
        client = await gateway_client(aiohttp_client, local)
        await create_event(client, redis, opens_in=1.0, admit_per_minute=0, max_active=100)
        tickets = [await join(client) for _ in range(20)]
        service = QueueService(redis, register_scripts(redis), "solo", 1000, 0.05)
        task = asyncio.create_task(service.run(stop))

        async def drawn() -> bool:
            return bool((await poll(client, tickets[0]))["status"] == "waiting")

        await wait_for(drawn, 10)
        before = {t["ticket_id"]: (await poll(client, t))["position"] for t in tickets}
        assert sorted(before.values()) == list(range(1, 21))
        server.kill()  # a crash, not a clean shutdown: fsync=always kept every write
        await asyncio.sleep(0.5)
        server.start()
        await asyncio.sleep(1.0)
        after = {t["ticket_id"]: (await poll(client, t))["position"] for t in tickets}
        assert after == before
    finally:
        stop.set()
        if task is not None:
            await task
        await redis.aclose()
        server.stop()
