"""The catalogue before the night (contract v1.1, Lévis: "quelques jours avant, le site est
accessible pour consulter les activités"): anyone may read it from the event's browsing
date, places as levels only, cacheable; a seat still needs an admission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from cart_service.catalogue import availability
from tests.conftest import AUTH, operator, redis_now, schedule
from tests.registration import API, EVENT, LEA, Stack, registration_stack
from waitroom.settings import Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def stack(
    settings: Settings, redis: Redis, ledger_url: str, aiohttp_client: ClientFactory
) -> AsyncIterator[Stack]:
    """The registration stack with a night an hour away, browsable in two seconds."""
    later = (await redis_now(redis) + timedelta(seconds=2)).isoformat()
    rules = {"opens_in": 3600, "closes_in": 7200, "browsing_opens_at": later}
    async with registration_stack(
        settings, redis, ledger_url, aiohttp_client, event_rules=rules
    ) as running:
        yield running


def test_places_are_shown_as_levels() -> None:
    assert [availability(left, 100) for left in (0, 1, 10, 11, 100)] == [
        "full", "few", "few", "available", "available",
    ]  # fmt: skip
    assert [availability(left, 10) for left in (0, 3, 4)] == ["full", "few", "available"]


async def test_anyone_browses_from_the_events_date_but_holds_nothing(stack: Stack) -> None:
    client = stack.client
    resp = await client.get(API + "/catalogue")
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "not_yet_browsable"
    event = await (await client.get(API)).json()
    assert body["browsing_opens_at"] == event["browsing_opens_at"] is not None

    await asyncio.sleep(2.1)
    resp = await client.get(API + "/catalogue?park=Parc+B&age_group=7-8+ans")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"].startswith("public, max-age=")
    assert "Authorization" in resp.headers["Vary"]
    (camp,) = (await resp.json())["activities"]
    assert camp["id"] == "b78-w1" and camp["availability"] == "few"  # one place of one
    assert not {"places_left", "capacity", "waiting_list"} & camp.keys()
    resp = await client.get(API + "/catalogue?park=Parc+A&age_group=7-8+ans")
    levels = {a["id"]: a["availability"] for a in (await resp.json())["activities"]}
    assert levels == {"a78-w1": "available", "a78-w2": "available"}
    facets = await (await client.get(API + "/catalogue?facets=only")).json()
    assert facets["activities"] == [] and facets["parks"] == ["Parc A", "Parc B", "École"]

    resp = await client.get(API + "/catalogue?kind=rocket")
    assert resp.status == 422 and (await resp.json())["field"] == "kind"
    resp = await client.get("/api/v1/events/nope/catalogue")
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_event"
    held = {"participant": LEA, "activity_ids": ["a78-w1"]}
    resp = await client.post(API + "/cart/items", json=held)
    assert resp.status == 401 and (await resp.json())["error"] == "missing_token"
    resp = await client.get(API + "/catalogue", headers={"Authorization": "Bearer forged"})
    assert resp.status == 401  # a token that is there is checked, never ignored


async def test_a_crowd_browsing_costs_the_cart_service_one_call(stack: Stack, redis: Redis) -> None:
    body = await schedule(redis, opens_in=3600, closes_in=7200)  # browsable from now on
    resp = await operator(stack.client).put(f"/admin/v1/events/{EVENT}", json=body, headers=AUTH)
    assert resp.status == 200
    labels = {
        "service": "waitroom.cart.v1.CartService", "method": "BrowseCatalogue", "code": "OK",
    }  # fmt: skip

    def calls() -> float:
        return REGISTRY.get_sample_value("waitroom_grpc_server_handled_total", labels) or 0.0

    before = calls()
    answers = await asyncio.gather(
        *(stack.client.get(API + "/catalogue?age_group=5-6+ans") for _ in range(30))
    )
    assert [a.status for a in answers] == [200] * 30
    bodies = {await a.read() for a in answers}
    assert len(bodies) == 1
    assert calls() - before == 1
