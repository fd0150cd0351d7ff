"""A Redis Cluster failing over raises errors outside ``RedisError``: the loops that keep
the night going ride through them, and a request that meets one is a 503, not a 500.

The fault drill's finding: the gateway's heartbeat writer caught only ``RedisError`` and
socket errors, so the first ``SlotNotCoveredError`` of a master's failover ended it for
good. That gateway answered polls for the rest of the night without recording one
heartbeat, and the leader requeued the parents it served as if they had gone."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError, SlotNotCoveredError
from redis.exceptions import TimeoutError as RedisTimeoutError

import gateway.heartbeats
import gateway.joiner
from gateway.heartbeats import HeartbeatBuffer
from tests.conftest import create_event
from waitroom.aio import loop_task
from waitroom.keys import EventKeys
from waitroom.redis_conn import unavailable
from waitroom.scripts import Scripts, register_scripts

SLOT = "Slot 1234 is not covered by the cluster."


def test_the_cluster_clients_failover_errors_mean_unavailable() -> None:
    assert unavailable(SlotNotCoveredError(SLOT))
    assert unavailable(RedisConnectionError("Connection refused"))
    assert unavailable(TimeoutError())
    assert unavailable(ResponseError("CLUSTERDOWN"))  # a RedisError, as before
    try:  # as the cluster client says it when no node answers (this host's link is down)
        raise RedisClusterException("Redis Cluster cannot be connected") from RedisTimeoutError()
    except RedisClusterException as exc:
        assert unavailable(exc)
    assert not unavailable(RedisClusterException("keys in request don't hash to the same slot"))
    assert not unavailable(KeyError("arrival"))
    assert not unavailable(AttributeError("no such attribute"))  # not from the client


async def test_the_heartbeat_writer_outlives_a_failover_and_keeps_what_it_could_not_write(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    written: list[dict[str, dict[int, int]]] = []
    failures: list[Exception] = [SlotNotCoveredError(SLOT), KeyError("a bug of ours")]

    async def record(scripts: Scripts, seen: dict[str, dict[int, int]]) -> None:
        if not seen:
            return
        if failures:
            raise failures.pop(0)
        written.append({event: dict(beats) for event, beats in seen.items()})

    monkeypatch.setattr(gateway.heartbeats, "record_heartbeats", record)
    buffer = HeartbeatBuffer(scripts=None)  # type: ignore[arg-type]
    buffer.beat("camp", 7, 1_000)
    stop = asyncio.Event()
    task = loop_task(buffer.run(0.01, stop), "heartbeats", stop)
    try:
        for _ in range(200):
            if written:
                break
            await asyncio.sleep(0.01)
        assert written == [{"camp": {7: 1_000}}], "the beat seen before the failover is written"
        assert not task.done(), "the loop goes on after the failover and the bug"
        buffer.beat("camp", 8, 2_000)
        for _ in range(200):
            if len(written) == 2:
                break
            await asyncio.sleep(0.01)
        assert written[1] == {"camp": {8: 2_000}}
    finally:
        stop.set()
        await task
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(
        level == logging.WARNING and "redis unavailable" in text and "SlotNotCovered" in text
        for level, text in messages
    )
    assert any(level == logging.ERROR and "not written" in text for level, text in messages)
    assert any("written again" in text for _, text in messages)


async def test_a_loop_that_dies_says_so_at_once(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise KeyError("a bug")

    stop = asyncio.Event()
    task = loop_task(broken(), "views", stop)
    with pytest.raises(KeyError):
        await task
    await asyncio.sleep(0)  # the done callbacks run on the next turn of the loop
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "views loop ended while serving" in errors[0].getMessage()
    assert errors[0].exc_info is not None

    async def quiet() -> None:
        await stop.wait()

    caplog.clear()
    task = loop_task(quiet(), "views", stop)
    stop.set()
    await task
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_join_during_a_failover_is_a_503_not_a_500(
    client: TestClient[Any, Any], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_event(client, redis, opens_in=60)

    async def failing_over(*args: Any, **kwargs: Any) -> Any:
        raise SlotNotCoveredError(SLOT)

    monkeypatch.setattr(gateway.joiner, "join_batch", failing_over)
    resp = await client.post("/api/v1/events/camp/tickets")
    assert resp.status == 503
    assert (await resp.json())["error"] == "unavailable"
    assert "Retry-After" in resp.headers


async def test_a_gateway_writing_late_never_puts_a_heartbeat_back(redis: Redis) -> None:
    """The fault drill's second finding: a gateway whose link was down wrote the
    heartbeats it had kept once the link came back, over the newer ones the other
    gateway had written meanwhile, and the leader skipped the parents whose turn came
    before their next poll was written."""
    scripts = register_scripts(redis)
    cut_off, other = HeartbeatBuffer(scripts), HeartbeatBuffer(scripts)
    cut_off.beat("camp", 7, 1_000)  # seen just before its link went down
    cut_off.beat("camp", 9, 1_500)
    other.beat("camp", 7, 31_000)  # the parent's next polls went to the other gateway
    await other.flush()
    await cut_off.flush()  # the link is back: it writes what it kept
    recorded = await redis.hgetall(EventKeys("camp").hb)
    assert recorded == {"7": "31000", "9": "1500"}
