"""The one clock: Redis ``TIME``, tracked as an offset from this process's wall clock."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class SharedClock:
    """Redis time as seen from this process; ``observe`` after each round trip that read it."""

    offset_ms: float = 0.0
    synced: bool = False

    def observe(
        self, redis_time: tuple[int, int] | list[int], sent_at: float, got_at: float
    ) -> None:
        """Record a ``TIME`` reply read between ``sent_at`` and ``got_at`` (local seconds)."""
        seconds, micros = int(redis_time[0]), int(redis_time[1])
        redis_ms = seconds * 1000 + micros / 1000
        local_ms = (sent_at + got_at) / 2 * 1000
        self.offset_ms = redis_ms - local_ms
        self.synced = True

    def now_ms(self) -> int:
        """Milliseconds since the epoch on the shared clock."""
        return int(time.time() * 1000 + self.offset_ms)
