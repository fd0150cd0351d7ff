"""The card never reaches our services: the sandbox provider's hosted card fields turn it
into a one-time token, checkout sends the token (PCI DSS SAQ A shape); a deployment can
refuse card numbers at checkout altogether."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import select

from payment_adapter.store import payments
from queue_service.service import QueueService
from tests.registration import (
    ANNE,
    APPROVE,
    LEA,
    ROY,
    Stack,
    idempotency_key,
    registration_stack,
)
from waitroom.settings import Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def stack(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
) -> AsyncIterator[Stack]:
    ledger = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    async with registration_stack(
        settings, redis, ledger, aiohttp_client, accept_card_numbers=False
    ) as running:
        yield running


async def _ready(s: Stack) -> dict[str, str]:
    headers = await s.admitted()
    for method, path, body in [
        ("POST", "/cart/family", ROY),
        ("POST", "/cart/items", {"participant": LEA, "activity_ids": ["a78-w1"]}),
        ("PUT", "/cart/payer", {**ROY, "member": ANNE, "email": "anne.roy@example.org"}),
        ("PUT", "/cart/conditions", {"accepted": True}),
    ]:
        status, answer = await s.call(method, path, headers, body)
        assert status == 200, answer
    return headers


async def test_checkout_takes_the_providers_token_and_no_card(stack: Stack) -> None:
    s = stack
    fields = s.settings.payment_fields_url
    headers = await _ready(s)
    async with aiohttp.ClientSession() as browser:
        card = {"number": APPROVE, "expiry": "12/30", "cvv": "123"}
        async with browser.post(f"{fields}/tokens", json=card) as resp:
            assert resp.status == 201
            minted = await resp.json()
        assert minted["token"].startswith("tok_") and minted["last4"] == "4242"
        async with browser.post(f"{fields}/tokens", json={**card, "number": "4242"}) as resp:
            assert resp.status == 422 and (await resp.json())["field"] == "number"
        async with browser.get(f"{fields}/fields?origin=http://127.0.0.1:8080&lang=en") as resp:
            assert resp.status == 200 and "Card number" in await resp.text()
            policy = resp.headers["Content-Security-Policy"]
            assert "frame-ancestors http://127.0.0.1:8080" in policy  # framed by us only
        for origin in ("javascript:alert(1)", "http://a;script-src *", "http://a b"):
            async with browser.get(f"{fields}/fields", params={"origin": origin}) as resp:
                assert resp.status == 400, origin

    pay = {**headers, "Idempotency-Key": idempotency_key()}
    status, refused = await s.call("POST", "/cart/checkout", pay, {"card": card})
    assert (status, refused["error"]) == (422, "card_numbers_not_accepted")
    both = {"card": card, "card_token": minted["token"]}
    status, refused = await s.call("POST", "/cart/checkout", pay, both)
    assert (status, refused["field"]) == (422, "card_token")
    status, refused = await s.call("POST", "/cart/checkout", pay, {"card_token": "tok_forged"})
    assert (status, refused["error"], refused["field"]) == (
        422, "invalid_card_token", "card_token",
    )  # fmt: skip
    pay = {**headers, "Idempotency-Key": idempotency_key()}
    status, paid = await s.call("POST", "/cart/checkout", pay, {"card_token": minted["token"]})
    assert (status, paid["outcome"]) == (200, "paid"), paid
    assert paid["receipt"]["card_last4"] == "4242"
    async with s.engine.connect() as conn:
        row = (await conn.execute(select(payments).where(payments.c.status == "approved"))).one()
    assert (row.brand, row.last4) == ("visa", "4242")
