"""Heartbeats are gathered in memory and written in one pipelined batch per interval.

A heartbeat carries the time the gateway saw the poll, on the shared clock, so a batch
written late (after a Redis outage) still says when the parent was really there, and
never moves a ticket's recorded time back past what another gateway wrote since.

A ticket's heartbeat is written at most once per ``grace`` (a quarter of the event's
heartbeat timeout, 30 s at most): the leader only asks "silent for longer than the
timeout?", and it adds the same grace before skipping, so the coarser record never
costs a parent their place. Polls every 5 s then cost one Redis field write in six.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from waitroom.aio import pause
from waitroom.redis_conn import RedisOutageLog
from waitroom.scripts import Scripts
from waitroom.tickets import record_heartbeats

log = logging.getLogger(__name__)
WRITTEN_MAX = 2_000_000  # arrivals remembered per event; past it, write all again once


class HeartbeatBuffer:
    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts
        self._seen: dict[str, dict[int, int]] = defaultdict(dict)
        self._written: dict[str, dict[int, int]] = defaultdict(dict)

    def beat(self, event_id: str, arrival: int, now_ms: int, grace_ms: int = 0) -> None:
        """Record a poll; it is queued for writing unless one was queued within ``grace_ms``."""
        written = self._written[event_id]
        if now_ms - written.get(arrival, 0) < grace_ms:
            return
        if len(written) >= WRITTEN_MAX:
            written.clear()
        written[arrival] = now_ms
        self._seen[event_id][arrival] = now_ms

    def pending(self) -> int:
        return sum(len(beats) for beats in self._seen.values())

    async def flush(self) -> None:
        """Write what was gathered; on any failure keep it (newest time wins) for the next
        try: a heartbeat dropped here costs a parent their place in line."""
        batch, self._seen = self._seen, defaultdict(dict)
        try:
            await record_heartbeats(self._scripts, batch)
        except BaseException:
            for event_id, beats in batch.items():
                current = self._seen[event_id]
                for arrival, ms in beats.items():
                    if current.get(arrival, 0) < ms:
                        current[arrival] = ms
            raise

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Flush every ``interval_s`` until ``stop``. Nothing ends this loop but ``stop``:
        if it died, this gateway would stop recording heartbeats, and every parent whose
        polls it answered would be taken for gone when their turn came."""
        outage = RedisOutageLog(
            log, "heartbeats not written, kept for the next try", "heartbeats written again"
        )
        while not stop.is_set():
            await pause(stop, interval_s)
            try:
                await self.flush()
            except Exception as exc:
                outage.failure(exc)
                continue
            outage.success()
