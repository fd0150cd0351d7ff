"""Heartbeats are gathered in memory and written in one pipelined batch per interval.

A heartbeat carries the time the gateway saw the poll, on the shared clock, so a batch
written late (after a Redis outage) still says when the parent was really there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from redis.asyncio import Redis
from redis.exceptions import RedisError

from waitroom.aio import pause
from waitroom.tickets import record_heartbeats

log = logging.getLogger(__name__)


class HeartbeatBuffer:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._seen: dict[str, dict[int, int]] = defaultdict(dict)

    def beat(self, event_id: str, arrival: int, now_ms: int) -> None:
        self._seen[event_id][arrival] = now_ms

    def pending(self) -> int:
        return sum(len(beats) for beats in self._seen.values())

    async def flush(self) -> None:
        """Write what was gathered; on failure keep it (newest time wins) for the next try."""
        batch, self._seen = self._seen, defaultdict(dict)
        try:
            await record_heartbeats(self._redis, batch)
        except (RedisError, OSError):
            for event_id, beats in batch.items():
                current = self._seen[event_id]
                for arrival, ms in beats.items():
                    if current.get(arrival, 0) < ms:
                        current[arrival] = ms
            raise

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await pause(stop, interval_s)
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                log.warning("heartbeats kept for later, redis unavailable: %s", exc)
