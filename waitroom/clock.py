"""The one clock: Redis ``TIME``, tracked as an offset from this process's wall clock.

A reading is a ``TIME`` reply and the local times around it; its offset assumes the
reply was made halfway, so it is wrong by up to half the round trip. A round trip
includes the time the reply waited for a busy event loop: with one second of lag the
offset is half a second early, and a process under load would stamp every heartbeat
seconds in the past, until the leader took parents who were polling for gone. So the
clock keeps the offset of the quickest reading of the last ``WINDOW_S`` (as NTP's clock
filter does): a slow reading is used only when no quicker one is recent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

WINDOW_S = 30.0  # clocks drift by microseconds a second: a reading this old is still good


@dataclass(slots=True)
class SharedClock:
    """Redis time as seen from this process; ``observe`` after each round trip that read it."""

    offset_ms: float = 0.0
    synced: bool = False
    round_trip_s: float = float("inf")  # of the reading the offset comes from
    read_at: float = 0.0  # local seconds when that reading ended

    def observe(
        self, redis_time: tuple[int, int] | list[int], sent_at: float, got_at: float
    ) -> None:
        """Record a ``TIME`` reply read between ``sent_at`` and ``got_at`` (local seconds)."""
        round_trip = max(0.0, got_at - sent_at)
        quicker = round_trip <= self.round_trip_s
        if self.synced and not quicker and got_at - self.read_at < WINDOW_S:
            return
        seconds, micros = int(redis_time[0]), int(redis_time[1])
        redis_ms = seconds * 1000 + micros / 1000
        local_ms = (sent_at + got_at) / 2 * 1000
        self.offset_ms = redis_ms - local_ms
        self.round_trip_s, self.read_at = round_trip, got_at
        self.synced = True

    def now_ms(self) -> int:
        """Milliseconds since the epoch on the shared clock."""
        return int(time.time() * 1000 + self.offset_ms)
