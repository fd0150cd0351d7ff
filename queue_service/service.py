"""The queue service's main loop: lead (or stand by), and tick every event."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from queue_service.leadership import Leadership
from queue_service.outflow import STATS_EVERY_S, EventOutflow
from waitroom.aio import pause
from waitroom.metrics import LEADER
from waitroom.redis_conn import RedisOutageLog
from waitroom.scripts import Scripts
from waitroom.viewstore import ViewStore

log = logging.getLogger(__name__)


class QueueService:
    """Every process runs this loop; only the lease holder draws and admits."""

    def __init__(
        self, redis: Redis, scripts: Scripts, instance: str, lease_ttl_ms: int, tick_s: float
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.store = ViewStore(redis)
        self.leadership = Leadership(scripts, instance, lease_ttl_ms)
        self.tick_s = tick_s
        self._outflows: dict[str, EventOutflow] = {}
        self._watched = -STATS_EVERY_S

    async def tick(self) -> None:
        """One round: renew the lease, refresh the views, and if leading, work each event."""
        leading = await self.leadership.step()
        LEADER.set(1 if leading else 0)
        if not leading:
            await self._watch()
            return
        await self.store.refresh()
        epoch = self.leadership.epoch
        for event_id in list(self.store.views):
            outflow = self._outflow(event_id)
            if not self.leadership.is_leader():
                return
            try:
                await outflow.tick(epoch)
            except ResponseError as exc:
                if "STALE_LEADER" in str(exc):
                    log.warning("fenced off by a newer leader; standing down")
                    self.leadership.value = None
                    LEADER.set(0)
                    return
                raise

    def _outflow(self, event_id: str) -> EventOutflow:
        outflow = self._outflows.get(event_id)
        if outflow is None:
            outflow = EventOutflow(self.redis, self.scripts, self.store, event_id, self.tick_s)
            self._outflows[event_id] = outflow
        return outflow

    async def _watch(self) -> None:
        """Standing by: once a second, measure what the leader measures (session lengths),
        so that a failover does not start the ETA's model from nothing."""
        now = time.monotonic()
        if now - self._watched < STATS_EVERY_S:
            return
        self._watched = now
        await self.store.refresh()
        for event_id in list(self.store.views):
            await self._outflow(event_id).watch()

    async def run(self, stop: asyncio.Event) -> None:
        outage = RedisOutageLog(log, "outflow tick skipped", "outflow ticking again")
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                outage.failure(exc)
            else:
                outage.success()
            await pause(stop, self.tick_s)
        await self.leadership.release()
