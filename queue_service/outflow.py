"""The leader's work on one event per tick: the draw at opens_at, then the throttled outflow."""

from __future__ import annotations

import logging
import time
from typing import cast

from redis.asyncio import Redis

from queue_service.eta import OutflowMeter, SessionMeter, Tick
from waitroom.keys import EventKeys
from waitroom.metrics import DRAW_DURATION
from waitroom.schedule import EventState
from waitroom.scripts import Scripts
from waitroom.view import EventView
from waitroom.viewstore import ViewStore

log = logging.getLogger(__name__)

CANDIDATES = 256  # lines offered to one advance call; skips make a call pass several
MAX_CALLS_PER_TICK = 8
STATS_EVERY_S = 1.0


def gap_for(tick_s: float) -> float:
    """The longest time between two ticks that still counts as the door working: ticks
    last milliseconds, so a second (or five ticks, when ticks are slow) means a stall."""
    return max(1.0, 5 * tick_s)


class EventOutflow:
    """Draws and admits for one event, fenced by the leader's epoch."""

    def __init__(
        self, redis: Redis, scripts: Scripts, store: ViewStore, event_id: str, tick_s: float
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._store = store
        self.event_id = event_id
        self.keys = EventKeys(event_id)
        self.meter = OutflowMeter(gap_s=gap_for(tick_s))
        self.sessions = SessionMeter()
        # When this process last ticked as the leader; None while it stands by, so that its
        # first tick as the leader does not count the time it stood by as time admitting.
        self._last_tick: float | None = None
        self._last_stats = 0.0

    async def tick(self, epoch: int) -> None:
        view = self._store.views.get(self.event_id)
        if view is None:
            return
        now_ms = self._store.clock.now_ms()
        state = view.state(now_ms)
        if not view.drawn and now_ms >= view.config.opens_ms:
            await self._draw(epoch)
            view = await self._store.refresh_event(self.event_id)
            if view is None:
                return
        started = time.monotonic()
        admitted = skipped = 0
        backlogged = False
        if view.drawn and state is EventState.OPEN:
            admitted, skipped, backlogged = await self._advance(view, epoch)
        seconds = 0.0 if self._last_tick is None else started - self._last_tick
        self.meter.record(Tick(started, seconds, admitted, skipped, backlogged))
        self._last_tick = started
        if started - self._last_stats >= STATS_EVERY_S:
            await self._publish_stats(view, started)

    async def _draw(self, epoch: int) -> None:
        k = self.keys
        started = time.perf_counter()
        result = await self._scripts.draw(keys=[k.cfg, k.draw, k.seq, k.fence, k.fam], args=[epoch])
        if int(result) == 1:
            took = time.perf_counter() - started
            DRAW_DURATION.labels(self.event_id).observe(took)
            log.info("draw done for %s in %.1f ms", self.event_id, took * 1000)

    async def _advance(self, view: EventView, epoch: int) -> tuple[int, int, bool]:
        """Offer the next lines to advance.lua until credit, room or the line runs out."""
        k = self.keys
        order = view.order
        assert order is not None
        served = view.served
        admitted = skipped = 0
        waiting_lines = 0
        for _ in range(MAX_CALLS_PER_TICK):
            candidates = [
                order.arrival_at(line) for line in range(served + 1, served + 1 + CANDIDATES)
            ]
            reply = await self._scripts.advance(
                keys=[
                    k.cfg,
                    k.draw,
                    k.seq,
                    k.served,
                    k.hb,
                    k.st,
                    k.rq,
                    k.skip,
                    k.active,
                    k.bucket,
                    k.log,
                    k.audit,
                    k.stats,
                    k.fence,
                ],
                args=[epoch, served, view.config.heartbeat_grace_ms, *candidates],
            )
            if int(reply[0]) == -1:
                # A join went straight in and moved the pointer: read it again next tick.
                await self._store.refresh_event(self.event_id)
                break
            new_served, n_admitted, n_skipped, _active, waiting_lines = (int(x) for x in reply)
            admitted += n_admitted
            skipped += n_skipped
            passed = new_served - served
            served = new_served
            view.served = served
            if passed < CANDIDATES:
                break
        return admitted, skipped, waiting_lines > 0

    async def watch(self) -> None:
        """A standby's share of the work: measure session lengths as the leader does, so
        that it knows them the moment it takes over. Otherwise the first minute after a
        failover has no ETA for anyone past the door's room (waitroom/view.py)."""
        self._last_tick = None
        view = self._store.views.get(self.event_id)
        if view is not None:
            await self._sample_sessions(view)

    async def _sample_sessions(self, view: EventView) -> None:
        active = cast(
            "list[tuple[str, float]]",
            await self._redis.zrange(self.keys.active, 0, -1, withscores=True),
        )
        self.sessions.sample(
            self._store.clock.now_ms(),
            {str(arrival): int(score) for arrival, score in active},
            view.config.session_ttl_ms,
        )

    async def _publish_stats(self, view: EventView, now: float) -> None:
        self._last_stats = now
        self.meter.record_total(now, int(view.stats.get("admitted", "0")))
        rate = self.meter.rate_per_s(now)
        await self._sample_sessions(view)
        session_s = self.sessions.mean_s()
        await self._redis.hset(
            self.keys.stats,
            mapping={
                "eta_rate_milli": str(round(rate * 1000)) if rate is not None else "-1",
                "eta_skip_ppm": str(round(self.meter.skip_share() * 1e6)),
                "eta_session_ms": str(round(session_s * 1000)) if session_s is not None else "-1",
                "admitted_last_minute": str(self.meter.admitted_last_minute()),
            },
        )
