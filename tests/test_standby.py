"""A standby queue service measures session lengths as the leader does, before a failover."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.conftest import create_event, join
from waitroom import keys
from waitroom.scripts import register_scripts
from waitroom.settings import Settings

Client = TestClient[Any, Any]


async def test_a_standby_knows_session_lengths_the_moment_it_takes_over(
    client: Client, redis: Redis, settings: Settings
) -> None:
    """30 sessions admitted 10 s ago, 25 of them ended about a second later: the standby
    saw them go, so its first stats as the leader carry a mean session length (about
    11 s), where a fresh leader would publish none (-1) and leave the ETA null past the
    door's room for as long as it takes to measure twenty sessions again."""
    body = await create_event(client, redis, opens_in=600, max_active=100)
    ttl_ms = int(body["config"]["session_ttl_s"]) * 1000
    scripts = register_scripts(redis)
    lease, tick = settings.lease_ttl_ms, settings.tick_s
    leader = QueueService(redis, scripts, "qs-a", lease, tick)
    standby = QueueService(redis, scripts, "qs-b", lease, tick)
    await leader.tick()
    assert leader.leadership.is_leader()
    k = keys.EventKeys("camp")
    assert await redis.hget(k.stats, "eta_session_ms") == "-1"  # nothing measured yet

    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    admitted_ms = now_ms - 10_000
    await redis.zadd(k.active, {str(a): admitted_ms + ttl_ms for a in range(1, 31)})
    await standby.tick()  # sees the 30 open
    assert not standby.leadership.is_leader()
    await asyncio.sleep(1.1)
    await redis.zrem(k.active, *[str(a) for a in range(1, 26)])
    assert await leader.leadership.step()  # the leader holds on, but measures nothing here
    await standby.tick()  # sees 25 gone
    await leader.leadership.release()  # the leader goes

    await standby.tick()
    assert standby.leadership.is_leader()
    session_ms = int(await redis.hget(k.stats, "eta_session_ms") or "-1")
    assert 10_500 <= session_ms <= 14_000, session_ms


async def test_a_standby_taking_over_measures_the_outflow_from_its_first_tick(
    client: Client, redis: Redis, settings: Settings
) -> None:
    """The seconds a standby stood by are not seconds it spent admitting: once it leads,
    its measured rate is the outflow's (10/s), not its admissions spread over the time it
    stood by as well (which read 4 a minute instead of 150 in a fault drill)."""
    await create_event(client, redis, opens_in=2.0, admit_per_minute=600, max_active=10_000)
    for _ in range(150):
        await join(client)
    scripts = register_scripts(redis)
    lease, tick = settings.lease_ttl_ms, settings.tick_s
    leader = QueueService(redis, scripts, "qs-a", lease, tick)
    standby = QueueService(redis, scripts, "qs-b", lease, tick)
    loop = asyncio.get_running_loop()

    async def run(service: QueueService, seconds: float) -> None:
        until = loop.time() + seconds
        while loop.time() < until:
            await service.tick()
            await asyncio.sleep(tick)

    await leader.tick()  # leads from the start
    await asyncio.gather(run(leader, 4.0), run(standby, 4.0))
    assert not standby.leadership.is_leader()
    await leader.leadership.release()
    await run(standby, 6.5)  # more than the 5 s of backlog a measured rate needs
    assert standby.leadership.is_leader()
    rate_milli = int(await redis.hget(keys.EventKeys("camp").stats, "eta_rate_milli") or "-1")
    assert 8_000 <= rate_milli <= 12_500, rate_milli
