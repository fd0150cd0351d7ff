"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, waking early when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def loop_task(
    coro: Coroutine[Any, Any, None], name: str, stop: asyncio.Event
) -> asyncio.Task[None]:
    """Start a loop meant to run until ``stop``; if it ends before (it raised), say so at
    ERROR at once rather than when the process exits: a loop that died quietly (the
    heartbeat writer, the outflow) looks healthy from outside while the night goes wrong."""

    def ended(task: asyncio.Task[None]) -> None:
        if stop.is_set() or task.cancelled():
            return
        exc = task.exception()
        log.error("%s loop ended while serving: %r", name, exc, exc_info=exc)

    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(ended)
    return task
