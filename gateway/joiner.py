"""Gathers the joins that arrive together into one script call per event."""

from __future__ import annotations

import asyncio

from waitroom.scripts import Scripts
from waitroom.tickets import JoinResult, join_batch

MAX_BATCH = 256

_Pending = list[tuple[str, asyncio.Future[JoinResult]]]


class JoinCoalescer:
    """``await join(event, client)``: joins share script calls, one call in flight per event.

    A join that finds no call under way for its event goes at the end of the loop's turn,
    with the others of that turn. One that finds a call under way waits for it to end and
    goes with everyone who arrived meanwhile. Under load the calls grow instead of
    multiplying: each call has a fixed cost in the gateway (redis-py's send and receive)
    and in Redis (the script's set-up), and ``make bench`` measured batches of about 20
    with every joins turn sent at once, and larger ones since. Quiet, a join waits for
    nothing. Arrival numbers follow the order joins reached the gateway."""

    def __init__(self, scripts: Scripts, limit: int, window_ms: int) -> None:
        self._scripts = scripts
        self._limit = limit
        self._window_ms = window_ms
        self._pending: dict[str, _Pending] = {}
        self._busy: set[str] = set()  # events with a call under way
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def join(self, event_id: str, client: str) -> asyncio.Future[JoinResult]:
        """The join's result, to await (a future, not a coroutine: a join awaits its
        script, and each coroutine in the chain is stepped again when it comes back)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JoinResult] = loop.create_future()
        pending = self._pending.get(event_id)
        if pending is None:
            pending = self._pending[event_id] = []
        pending.append((client, future))
        if not self._scheduled and event_id not in self._busy:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        for event_id in [e for e in self._pending if e not in self._busy]:
            self._start(event_id)

    def _start(self, event_id: str) -> None:
        """Send the event's waiting joins (up to MAX_BATCH) in one call."""
        joins = self._pending.pop(event_id)
        if len(joins) > MAX_BATCH:
            self._pending[event_id] = joins[MAX_BATCH:]
            joins = joins[:MAX_BATCH]
        self._busy.add(event_id)
        task = asyncio.create_task(self._run(event_id, joins))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, event_id: str, joins: _Pending) -> None:
        clients = [client for client, _ in joins]
        try:
            results = await join_batch(
                self._scripts, event_id, clients, self._limit, self._window_ms
            )
            if len(results) != len(joins):  # never leave a join (or the event) waiting
                raise RuntimeError(f"join script answered {len(results)} of {len(joins)}")
        except asyncio.CancelledError:  # shutting down: nothing more is sent
            for _, future in joins:
                future.cancel()
            self._busy.discard(event_id)
            raise
        except Exception as exc:
            for _, future in joins:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(joins, results, strict=True):
                if not future.done():
                    future.set_result(result)
        self._busy.discard(event_id)
        if event_id in self._pending:  # who came while this call was under way
            self._start(event_id)

    async def drain(self) -> None:
        """Wait for the joins under way (at shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
