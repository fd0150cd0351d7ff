"""One leader at a time: a Redis lease with a fencing epoch; standbys take over on expiry."""

from __future__ import annotations

import logging
import time

from waitroom import keys
from waitroom.redis_conn import describe, unavailable
from waitroom.scripts import Scripts

log = logging.getLogger(__name__)


class Leadership:
    """Holds, renews and gives up the lease. ``epoch`` fences every write the leader makes."""

    def __init__(self, scripts: Scripts, instance: str, ttl_ms: int) -> None:
        self._scripts = scripts
        self.instance = instance
        self.ttl_ms = ttl_ms
        self.value: str | None = None
        self._renewed_at = 0.0

    @property
    def epoch(self) -> int:
        if self.value is None:
            raise RuntimeError("not the leader")
        return int(self.value.split(":", 1)[0])

    def is_leader(self) -> bool:
        """True while the lease is ours and was renewed recently enough to still be valid.

        Without a renewal for most of the TTL we stop acting even before Redis says so: a
        standby may already have taken over, and the fencing epoch is the second guard.
        """
        if self.value is None:
            return False
        return (time.monotonic() - self._renewed_at) * 1000 < self.ttl_ms * 0.8

    async def step(self) -> bool:
        """Acquire or renew; returns whether this process leads now."""
        try:
            value = await self._scripts.lease(
                keys=[keys.LEADER, keys.LEADER_EPOCH],
                args=[self.value or "", self.ttl_ms, self.instance],
            )
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.warning("lease not renewed, redis unavailable: %s", describe(exc))
            return self.is_leader()
        if value is None:
            if self.value is not None:
                log.warning("leadership lost (%s)", self.value)
            self.value = None
            return False
        if value != self.value:
            log.info("leading now as %s", value)
        self.value = str(value)
        self._renewed_at = time.monotonic()
        return True

    async def release(self) -> None:
        """Give the lease up at a clean shutdown so a standby need not wait for it to expire."""
        if self.value is None:
            return
        try:
            await self._scripts.release(keys=[keys.LEADER], args=[self.value])
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.warning("lease not released: %s", describe(exc))
        self.value = None
