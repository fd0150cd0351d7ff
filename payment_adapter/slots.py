"""At most N payments in flight toward the provider, for every adapter replica together.

The provider takes a few hundred at a time at most: that is why the waiting room exists.
With one adapter process (SQLite) an asyncio semaphore keeps the count. With several
replicas on PostgreSQL the slots are the rows of ``provider_slots``: a charge holds one
row locked (``FOR UPDATE SKIP LOCKED``) in an open transaction while it talks to the
provider. A replica that dies mid-charge loses its connection, its transaction ends and
the slot is free again: nothing to clean up, no lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_adapter.store import provider_slots

POLL_S = (0.005, 0.025)  # how long a charge waits between looks for a free slot


class Slots(Protocol):
    def hold(self, timeout_s: float) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold a slot for the block: True, or False when none came free in time."""


class LocalSlots:
    """Slots of this process alone (one adapter process)."""

    def __init__(self, concurrency: int) -> None:
        self._semaphore = asyncio.Semaphore(concurrency)

    @contextlib.asynccontextmanager
    async def hold(self, timeout_s: float) -> AsyncIterator[bool]:
        try:
            await asyncio.wait_for(self._semaphore.acquire(), timeout_s)
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            self._semaphore.release()


class SharedSlots:
    """Slots shared through PostgreSQL by every replica using the same database."""

    def __init__(self, engine: AsyncEngine, concurrency: int) -> None:
        self._engine = engine
        self._concurrency = concurrency
        self._prepared = False

    async def prepare(self) -> None:
        """Make sure rows 0..concurrency-1 exist (a larger setting adds rows; a smaller
        one only uses the first ones). Done before the first charge at the latest."""
        rows = [{"id": i} for i in range(self._concurrency)]
        async with self._engine.begin() as conn:
            await conn.execute(postgresql.insert(provider_slots).on_conflict_do_nothing(), rows)
        self._prepared = True

    @contextlib.asynccontextmanager
    async def hold(self, timeout_s: float) -> AsyncIterator[bool]:
        if not self._prepared:
            await self.prepare()
        deadline = time.monotonic() + timeout_s
        query = (
            select(provider_slots.c.id)
            .where(provider_slots.c.id < self._concurrency)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        while True:
            # A connection only to try: a charge waiting for a slot must not hold one of
            # the pool's connections, which the charges in flight need to record theirs.
            conn = await self._engine.connect()
            try:
                await conn.begin()
                if (await conn.execute(query)).first() is not None:
                    break
            except BaseException:
                await conn.close()
                raise
            await conn.close()
            if time.monotonic() >= deadline:
                yield False
                return
            await asyncio.sleep(random.uniform(*POLL_S))
        try:
            yield True
        finally:
            await conn.close()  # its transaction ends: the slot is free again


def slots_for(engine: AsyncEngine, concurrency: int) -> LocalSlots | SharedSlots:
    """Shared slots on PostgreSQL (replicas), this process's own on SQLite."""
    if engine.dialect.name == "postgresql":
        return SharedSlots(engine, concurrency)
    return LocalSlots(concurrency)
