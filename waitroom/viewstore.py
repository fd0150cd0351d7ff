"""Keeps one EventView per event fresh from Redis, for gateways and the queue leader."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis

from waitroom import keys
from waitroom.aio import pause
from waitroom.clock import SharedClock
from waitroom.draw import DrawnOrder
from waitroom.metrics import REDIS_LATENCY, timed
from waitroom.redis_conn import RedisOutageLog
from waitroom.schedule import EventConfig
from waitroom.view import EventView

log = logging.getLogger(__name__)

LOG_CHUNK = 5000


class ViewStore:
    """The views of every registered event, refreshed together."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.clock = SharedClock()
        self.views: dict[str, EventView] = {}
        self.leader: str | None = None
        self.refreshed_at = 0.0  # monotonic time of the last complete refresh
        self._orders: dict[tuple[str, str, int, int], DrawnOrder] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def age_s(self) -> float:
        """Seconds since the last successful refresh (infinite before the first)."""
        if self.refreshed_at == 0.0:
            return float("inf")
        return time.monotonic() - self.refreshed_at

    async def refresh(self) -> None:
        """Refresh every view; raises RedisError when Redis cannot be reached."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.EVENTS)
            pipe.get(keys.LEADER)
            with timed(REDIS_LATENCY, "refresh_events"):
                event_ids, leader = await pipe.execute()
        # Redis' clock on its own: a cluster pipeline refuses TIME (it names no key).
        sent = time.time()
        redis_time = await self.redis.time()
        self.clock.observe(redis_time, sent, time.time())
        self.leader = leader
        await asyncio.gather(*(self.refresh_event(e) for e in sorted(event_ids)))
        for gone in set(self.views) - set(event_ids):
            del self.views[gone]
        self.refreshed_at = time.monotonic()

    async def refresh_event(self, event_id: str) -> EventView | None:
        """Refresh one event's view (created on first sight); None if it does not exist.

        One refresh of an event at a time: two interleaved ones would both fold the same
        tail of the change log and then skip as many entries.
        """
        lock = self._locks.get(event_id)
        if lock is None:
            lock = self._locks[event_id] = asyncio.Lock()
        async with lock:
            return await self._refresh_event(event_id)

    async def _refresh_event(self, event_id: str) -> EventView | None:
        k = keys.EventKeys(event_id)
        view = self.views.get(event_id)
        while True:
            start = view.log_index if view is not None else 0
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(k.cfg)
                pipe.hgetall(k.draw)
                pipe.get(k.seq)
                pipe.get(k.served)
                pipe.zcount(k.active, f"({self.clock.now_ms()}", "+inf")
                pipe.hgetall(k.stats)
                pipe.lrange(k.log, start, start + LOG_CHUNK - 1)
                with timed(REDIS_LATENCY, "refresh_event"):
                    cfg, draw, seq, served, active, stats, entries = await pipe.execute()
            if not cfg:
                self.views.pop(event_id, None)
                return None
            config = EventConfig.from_hash(event_id, cfg)
            if view is None or view.config.salt != config.salt:
                view = EventView(event_id, config)
                self.views[event_id] = view
            view.config = config
            view.seq = int(seq or 0)
            view.served = int(served or 0)
            view.active = int(active)
            view.set_stats(stats)
            await self._apply_draw(view, draw)
            view.apply_log(entries)
            if len(entries) < LOG_CHUNK:
                return view

    async def _apply_draw(self, view: EventView, draw: dict[str, Any]) -> None:
        view.commitment = draw.get("commitment", "")
        if "prequeue" in draw:
            view.prequeue = int(draw["prequeue"])
        if draw.get("drawn") != "1":
            return
        view.seed_hex = draw["seed"]
        view.drawn_at_ms = int(draw["drawn_at"])
        if view.order is None:
            kept = [int(a) for a in draw["kept"].split()] if "kept" in draw else None
            if kept is not None:  # one chance per family: who identified as what
                tfam = keys.EventKeys(view.event_id).tfam
                families: dict[str, str] = await self.redis.hgetall(tfam)  # type: ignore[assignment]
                view.families = {int(a): number for a, number in families.items()}
            view.kept = kept
            order_key = (view.event_id, view.seed_hex, int(draw["prequeue"]), len(kept or ()))
            order = self._orders.get(order_key)
            if order is None:
                # A large pre-queue takes a moment to shuffle: keep the event loop free.
                order = await asyncio.to_thread(
                    DrawnOrder.compute,
                    bytes.fromhex(view.seed_hex),
                    view.event_id,
                    int(draw["prequeue"]),
                    view.config.prequeue_order == "fifo",
                    kept,
                )
                # Keep one order per event: an event is drawn once.
                others = {k: v for k, v in self._orders.items() if k[0] != view.event_id}
                self._orders = {**others, order_key: order}
            view.set_order(order)

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Refresh every ``interval_s`` until ``stop``; Redis outages are logged, not fatal."""
        outage = RedisOutageLog(log, "event views not refreshed", "event views refreshed again")
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:
                outage.failure(exc)
            else:
                outage.success()
            await pause(stop, interval_s)
