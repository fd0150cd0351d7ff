"""One chance per family in the draw: a family names itself on one pre-queue ticket before
the draw; the lottery is among those tickets, one per family (its first), the others
follow in arrival order; the published draw says which entered, and verify-draw checks
it; the admitted session registers that family only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.conftest import join, poll, wait_for
from tests.registration import API, ROY, TREMBLAY, Stack, registration_stack
from waitroom.audit import load_record, verify
from waitroom.draw import DrawnOrder, draw_order
from waitroom.settings import Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def stack(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    tmp_path: Any,
    aiohttp_client: ClientFactory,
) -> AsyncIterator[Stack]:
    rules = {"opens_in": 4, "one_per_family": True, "admit_per_minute": 6000}
    ledger = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    async with registration_stack(
        settings, redis, ledger, aiohttp_client, event_rules=rules
    ) as running:
        yield running


async def _claim(s: Stack, ticket: dict[str, Any], family: dict[str, str]) -> tuple[int, Any]:
    resp = await s.client.post(f"{API}/tickets/{ticket['ticket_id']}/family", json=family)
    return resp.status, await resp.json()


async def test_one_entry_per_family_first_come_and_the_rest_behind(stack: Stack) -> None:
    s = stack
    tickets = [await join(s.client, "camp") for _ in range(6)]  # arrivals 1..6
    assert await _claim(s, tickets[1], ROY) == (
        200, {"client_number": "100234", "in_draw": True, "arrival": 2},
    )  # fmt: skip
    assert (await _claim(s, tickets[1], ROY))[0] == 200  # again: the same entry
    status, refused = await _claim(s, tickets[4], {**ROY, "phone": "4188392002"})
    assert (status, refused) == (
        409, {"error": "family_already_in_draw", "holder_arrival": 2},
    )  # fmt: skip
    assert (await _claim(s, tickets[3], TREMBLAY))[0] == 200
    status, refused = await _claim(s, tickets[3], ROY)
    assert (status, refused["error"]) == (409, "ticket_has_another_family")
    status, refused = await _claim(s, tickets[0], {**ROY, "phone": "418 839-2003"})
    assert (status, refused["error"], refused["field"]) == (422, "phone_mismatch", "phone")
    for _ in range(4):  # five tries in all
        await _claim(s, tickets[0], {**ROY, "phone": "418 839-2003"})
    status, refused = await _claim(s, tickets[0], TREMBLAY)
    assert (status, refused["error"]) == (429, "too_many_attempts")  # no phone oracle

    async def drawn() -> bool:
        event = await (await s.client.get(API)).json()
        return bool(event["draw"]["seed"])

    await wait_for(drawn, 15)
    event = await (await s.client.get(API)).json()
    assert event["draw"]["one_per_family"] is True and event["draw"]["entries"] == 2
    status, refused = await _claim(s, tickets[2], ROY)
    assert (status, refused["error"]) == (409, "draw_done")

    record = await load_record(s.redis, "camp")
    assert record.kept == [2, 4] and record.prequeue == 6
    assert verify(record).ok
    order = DrawnOrder.compute(bytes.fromhex(record.seed), "camp", 6, False, record.kept)
    assert sorted(order.by_line[:2]) == [2, 4]  # the lottery: one entry per family
    assert list(order.by_line[2:]) == [1, 3, 5, 6]  # then the others, in arrival order
    tampered = type(record).from_json(record.to_json().replace('"kept": [2, 4]', '"kept": [4, 2]'))
    assert not verify(tampered).ok

    found: dict[str, Any] = {}

    async def admitted() -> bool:
        found.update(await poll(s.client, tickets[1]))
        return bool(found["status"] == "admitted")

    await wait_for(admitted, 15)
    roy_session = {"Authorization": f"Bearer {found['admission']['token']}"}
    status, refused = await s.call("POST", "/cart/family", roy_session, TREMBLAY)
    assert (status, refused["error"]) == (409, "family_mismatch")  # its entry was the Roys'
    status, cart = await s.call("POST", "/cart/family", roy_session, ROY)
    assert status == 200 and cart["client_number"] == "100234"


def test_the_lottery_is_the_published_shuffle_of_the_entries() -> None:
    seed = bytes(range(32))
    kept = [3, 7, 8, 20]
    order = DrawnOrder.compute(seed, "camp", 25, False, kept)
    lottery = [kept[i - 1] for i in draw_order(seed, "camp", len(kept))]
    assert list(order.by_line) == lottery + [a for a in range(1, 26) if a not in kept]
    assert [order.line(a) for a in lottery] == [1, 2, 3, 4]
