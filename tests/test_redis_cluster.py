"""A Redis Cluster master dies mid-night (SIGKILL): its replica is promoted within a few
seconds, the gateway and the queue leader ride through it, no ticket is lost or moves
back, the outflow resumes, and the draw is the one published before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.conftest import create_event, join, wait_for
from tests.support.tools import tool
from waitroom import audit, keys
from waitroom.redis_cluster import ClusterNode, RedisClusterServer

Client = TestClient[Any, Any]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisClusterServer]:
    """A cluster of this test's own (it kills a node); the shared fixtures use it."""
    tool("redis-cli", "Debian's redis-tools")
    server = RedisClusterServer(tmp_path / "cluster")
    server.start()
    yield server
    server.stop()


def _master_of(cluster: RedisClusterServer, key: str) -> ClusterNode:
    """The node serving ``key``'s hash slot now."""
    any_node = sync_redis.Redis(port=cluster.masters()[0].port, decode_responses=True)
    try:
        slot = int(any_node.cluster("keyslot", key))
        for start, end, master, *_ in any_node.cluster("slots"):
            if start <= slot <= end:
                port = int(master[1])
                return next(n for n in cluster.nodes if n.port == port)
    finally:
        any_node.close()
    raise AssertionError(f"no master for slot of {key}")


async def _state(client: Client, tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ticket's poll, retried while the gateway answers 503 (Redis failing over)."""
    found = []
    for ticket in tickets:
        url = f"/api/v1/events/camp/tickets/{ticket['ticket_id']}"
        for _ in range(100):
            resp = await client.get(url)
            if resp.status == 200:
                found.append(await resp.json())
                break
            assert resp.status == 503, await resp.text()
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{url} unavailable for 10 s")
    return found


async def test_a_master_dies_and_its_replica_takes_over(
    redis_server: RedisClusterServer, client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(client, redis, opens_in=1.0, admit_per_minute=240, max_active=1000)
    tickets = [await join(client) for _ in range(60)]

    async def drawn_and_moving() -> bool:
        states = await _state(client, tickets)
        return bool(sum(s["status"] == "admitted" for s in states) >= 5)

    await wait_for(drawn_and_moving, 20)
    before = await _state(client, tickets)
    record = await audit.load_record(redis, "camp")
    await asyncio.sleep(1.0)  # replication is asynchronous: let the replica catch up

    master = _master_of(redis_server, keys.EventKeys("camp").cfg)
    master.kill()
    killed = time.monotonic()
    await asyncio.to_thread(redis_server.wait_healthy, 30)
    promoted_s = time.monotonic() - killed
    assert promoted_s < 10, promoted_s
    assert _master_of(redis_server, keys.EventKeys("camp").cfg) is not master

    admitted_then = sum(s["status"] == "admitted" for s in await _state(client, tickets))

    async def moving_again() -> bool:
        states = await _state(client, tickets)
        moved = sum(s["status"] in ("admitted", "done") for s in states)
        return bool(moved >= admitted_then + 3)

    await wait_for(moving_again, 15)  # the outflow resumed (240 a minute: 4 a second)
    after = await _state(client, tickets)
    for was, now in zip(before, after, strict=True):
        assert now["arrival"] == was["arrival"]  # every ticket is still there
        if was["status"] == "admitted":
            assert now["status"] in ("admitted", "done"), (was, now)
        if was["status"] == "waiting" and now["status"] == "waiting":
            assert now["position"] <= was["position"], (was, now)  # never moves back
    again = await audit.load_record(redis, "camp")
    assert (again.seed, again.commitment, again.prequeue) == (
        record.seed, record.commitment, record.prequeue,
    )  # fmt: skip
    assert again.served[: len(record.served)] == record.served  # the served order holds
