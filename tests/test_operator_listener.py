"""The operator listener: the operator API and /metrics live there, not on the public
port (404 there unless an operator turns the v1 layout back on); every change is logged
with who made it and what it was."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.conftest import AUTH, create_event, gateway_client, operator, schedule
from waitroom.settings import Settings

Client = TestClient[Any, Any]


async def test_operator_paths_are_only_on_the_operator_listener(
    client: Client, redis: Redis
) -> None:
    await create_event(client, redis, opens_in=60)
    for path in ("/admin/v1/events/camp/stats", "/metrics"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404 and (await resp.json())["error"] == "not_found", path
    resp = await client.patch("/admin/v1/events/camp", json={"max_active": 1}, headers=AUTH)
    assert resp.status == 404
    admin = operator(client)
    resp = await admin.get("/admin/v1/events/camp/stats", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["config"]["max_active"] == 1000
    resp = await admin.get("/metrics")
    assert resp.status == 200 and "waitroom_http_requests_total" in await resp.text()
    # Parents' paths are not on the operator listener; the probes are on both.
    resp = await admin.post("/api/v1/events/camp/tickets")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    assert (await admin.get("/healthz")).status == 200
    assert (await client.get("/healthz")).status == 200


async def test_the_v1_layout_can_be_turned_back_on(
    settings: Settings,
    redis: Redis,
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    v1 = await gateway_client(
        aiohttp_client, settings.model_copy(update={"admin_on_public_port": True})
    )
    resp = await v1.put("/admin/v1/events/camp", json=await schedule(redis), headers=AUTH)
    assert resp.status == 201
    assert (await v1.get("/admin/v1/events/camp/stats")).status == 401  # the token still
    assert (await v1.get("/metrics")).status == 200


async def test_every_change_is_logged_with_who_and_what(
    client: Client, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await create_event(client, redis, opens_in=60)
    admin = operator(client)
    caplog.set_level(logging.INFO, logger="waitroom.operator")
    who = {**AUTH, "X-Operator": "marie.tremblay@levis.ca"}
    resp = await admin.patch("/admin/v1/events/camp", json={"max_active": 5}, headers=who)
    assert resp.status == 200
    resp = await admin.patch("/admin/v1/events/camp", json={"max_active": -1}, headers=AUTH)
    assert resp.status == 422
    await admin.post("/admin/v1/events/camp/pause", headers={**AUTH, "X-Operator": "robert; DROP"})
    await admin.get("/admin/v1/events/camp/stats", headers=AUTH)  # reads are not changes
    lines = [r.getMessage() for r in caplog.records if r.name == "waitroom.operator"]
    assert lines == [
        "operator marie.tremblay@levis.ca from 127.0.0.1: PATCH /admin/v1/events/camp"
        " max_active -> 200",
        "operator unnamed from 127.0.0.1: PATCH /admin/v1/events/camp max_active -> 422",
        "operator unnamed from 127.0.0.1: POST /admin/v1/events/camp/pause - -> 200",
    ]


async def test_a_number_too_long_for_python_is_a_422_not_a_500(
    client: Client, redis: Redis
) -> None:
    await create_event(client, redis, opens_in=60)
    body = b'{"max_active": ' + b"9" * 5000 + b"}"
    resp = await operator(client).patch(
        "/admin/v1/events/camp", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 422 and (await resp.json())["error"] == "invalid_event"
