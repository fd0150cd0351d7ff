"""Several stateless gateway processes share one Redis: any of them answers any ticket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.conftest import create_event, gateway_client, join, poll, wait_for
from waitroom.settings import Settings

Client = TestClient[Any, Any]


async def test_a_ticket_from_one_gateway_is_known_to_another(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    first = await gateway_client(aiohttp_client, settings)
    second = await gateway_client(aiohttp_client, settings)
    await create_event(first, redis, opens_in=1.0, admit_per_minute=60, max_active=100)
    ticket = await join(first)
    # Polled on the other gateway at once, before its view has seen the new arrival.
    again = await poll(second, ticket)
    assert again["ticket_id"] == ticket["ticket_id"] and again["status"] == "prequeue"
    others = [await join(second) for _ in range(3)]

    async def drawn_everywhere() -> bool:
        bodies = [await poll(c, t) for c in (first, second) for t in [ticket, *others]]
        return all(b["status"] in ("waiting", "admitted") for b in bodies)

    await wait_for(drawn_everywhere, 10)
    await asyncio.sleep(0.3)
    for t in [ticket, *others]:
        a, b = await poll(first, t), await poll(second, t)
        assert (a["status"], a["position"]) == (b["status"], b["position"])
    resp = await second.delete(f"/api/v1/events/camp/tickets/{ticket['ticket_id']}")
    assert resp.status == 204

    async def gone_on_first() -> bool:
        return bool((await poll(first, ticket))["status"] == "done")

    await wait_for(gone_on_first, 5)
