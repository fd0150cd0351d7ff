"""Gathers the joins that arrive together into one script call per event."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from waitroom.scripts import Scripts
from waitroom.tickets import JoinResult, join_batch

MAX_BATCH = 256


class JoinCoalescer:
    """``await join(event, client)``: joins queued in one loop turn share a round trip."""

    def __init__(self, scripts: Scripts, limit: int, window_ms: int) -> None:
        self._scripts = scripts
        self._limit = limit
        self._window_ms = window_ms
        self._pending: dict[str, list[tuple[str, asyncio.Future[JoinResult]]]] = defaultdict(list)
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def join(self, event_id: str, client: str) -> JoinResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JoinResult] = loop.create_future()
        self._pending[event_id].append((client, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, defaultdict(list)
        for event_id, joins in pending.items():
            for start in range(0, len(joins), MAX_BATCH):
                task = asyncio.create_task(self._run(event_id, joins[start : start + MAX_BATCH]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(
        self, event_id: str, joins: list[tuple[str, asyncio.Future[JoinResult]]]
    ) -> None:
        try:
            results = await join_batch(
                self._scripts,
                event_id,
                [client for client, _ in joins],
                self._limit,
                self._window_ms,
            )
        except Exception as exc:
            for _, future in joins:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(joins, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def drain(self) -> None:
        """Wait for the joins under way (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
