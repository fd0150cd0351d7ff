"""The registration stack for end-to-end tests: the real gateway, the real cart service
and payment adapter on free gRPC ports, a real SMTP server, a ledger on SQLite or
PostgreSQL, and a small catalogue whose capacities the tests can fill."""

from __future__ import annotations

import asyncio
import email
import email.policy
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from typing import Any

from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

import cart_service.__main__ as cart_main
import payment_adapter.__main__ as payment_main
from cart_service import catalogue
from cart_service.demo import FAMILIES
from cart_service.ledger import create_schema
from payment_adapter.store import create_schema as create_payment_schema
from tests.conftest import create_event, gateway_client, join, poll, wait_for
from waitroom.db import make_engine
from waitroom.redis_server import free_port
from waitroom.settings import Settings

EVENT = "camp"
API = f"/api/v1/events/{EVENT}"
SERVICE_TOKEN = "test-service-token"
APPROVE = "4242 4242 4242 4242"
APPROVE_MC = "5555-5555-5555-4444"
DECLINE = "4000 0000 0000 0002"
CHARGED_LATE = "4000 0000 0000 0119"
NEVER_ANSWERS = "4000 0000 0000 0127"
# The Roy family (demo data): Léa is 8 on 2027-07-05, Hugo 9, Zoé 5.
ROY = {"client_number": "100234", "phone": "418 839-2002"}
TREMBLAY = {"client_number": "100871", "phone": "(418)641-6018"}
COTE = {"client_number": "102010", "phone": "418 833-5544"}  # account not validated yet
LEA, HUGO, ZOE, ANNE, MARC = "P102", "P103", "P104", "P100", "P101"
NOAH, EMMA, JULIE, ERIC = "P202", "P203", "P200", "P201"


def _activity(
    id: str, park: str, group: str, low: int | None, high: int | None, **kw: Any
) -> dict[str, Any]:
    start = kw.pop("starts_on", date(2027, 7, 5))
    row: dict[str, Any] = {
        "id": id,
        "event_id": EVENT,
        "kind": "day_camp",
        "title": f"Camp {park} {group} {start}",
        "park": park,
        "age_group": group,
        "starts_on": start,
        "ends_on": date(start.year, start.month, start.day + 4),
        "price_cents": 12_500,
        "capacity": 10,
        "min_age": low,
        "max_age": high,
        "class_min": None,
        "class_max": None,
        "childcare": True,
    }
    row.update(kw)
    return row


CATALOGUE = [
    _activity("a78-w1", "Parc A", "7-8 ans", 7, 8),
    _activity("a78-w2", "Parc A", "7-8 ans", 7, 8, starts_on=date(2027, 7, 12)),
    _activity("a910-w1", "Parc A", "9-10 ans", 9, 10, price_cents=13_000),
    _activity("a910-w2", "Parc A", "9-10 ans", 9, 10, starts_on=date(2027, 7, 12)),
    _activity("b78-w1", "Parc B", "7-8 ans", 7, 8, capacity=1),
    _activity("b56-w1", "Parc B", "5-6 ans", 5, 6, capacity=1),
    _activity(
        "chess-1-2",
        "École",
        "primaire",
        None,
        None,
        kind="course",
        class_min=1,
        class_max=2,
        childcare=False,
        price_cents=8_000,
    ),
]


async def load_catalogue(engine: AsyncEngine, *, deferred: bool = False) -> None:
    event = {
        "id": EVENT, "title": "Camps 2027", "currency": "CAD", "timezone": "America/Toronto",
        "payment_deferred": deferred,
    }  # fmt: skip
    assert await catalogue.load_catalogue(engine, event, CATALOGUE, FAMILIES)


class MailCatcher:
    """An aiosmtpd handler keeping every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@dataclass
class Stack:
    client: TestClient[Any, Any]
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    mail: MailCatcher
    tokens: list[str] = field(default_factory=list)

    async def admitted(self) -> dict[str, str]:
        """Join the waiting room, wait to be admitted; the headers that carry the token."""
        ticket = await join(self.client, EVENT)
        found: dict[str, Any] = {}

        async def admitted() -> bool:
            found.update(await poll(self.client, ticket))
            return found.get("status") == "admitted"

        await wait_for(admitted)
        token = str(found["admission"]["token"])
        self.tokens.append(token)
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, headers: dict[str, str], body: object = None, **kw: Any
    ) -> tuple[int, Any]:
        resp = await self.client.request(method, API + path, headers=headers, json=body, **kw)
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


@asynccontextmanager
async def registration_stack(
    settings: Settings,
    redis: Redis,
    ledger_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    *,
    deferred: bool = False,
    event_rules: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    catcher = MailCatcher()
    smtp = Controller(catcher, hostname="127.0.0.1", port=free_port())
    smtp.start()
    cart_port, payment_port, fields_port = free_port(), free_port(), free_port()
    values: dict[str, Any] = {
        "database_url": ledger_url,
        "cart_grpc_port": cart_port,
        "payment_grpc_port": payment_port,
        "cart_target": f"127.0.0.1:{cart_port}",
        "payment_target": f"127.0.0.1:{payment_port}",
        "sandbox_fields_port": fields_port,
        "accept_card_numbers": True,  # the API tests post sandbox cards themselves
        "payment_fields_url": f"http://127.0.0.1:{fields_port}",
        "service_token": SERVICE_TOKEN,
        "smtp_port": smtp.port,
        "sandbox_latency_ms": 0,
        "provider_timeout_s": 0.5,
        "provider_deadline_s": 2,
        "payment_lock_s": 2,
        "settle_interval_s": 0.2,
        "cart_metrics_port": 0,
        "payment_metrics_port": 0,
        **overrides,
    }
    stack_settings = Settings(**{**settings.model_dump(), **values})
    engine = make_engine(ledger_url)
    await create_schema(engine)
    await create_payment_schema(engine)
    await load_catalogue(engine, deferred=deferred)
    stop = asyncio.Event()
    ready = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(payment_main.serve(stack_settings, stop, ready[0])),
        asyncio.create_task(cart_main.serve(stack_settings, stop, ready[1])),
    ]
    try:
        for event in ready:
            await asyncio.wait_for(event.wait(), 30)
        client = await gateway_client(aiohttp_client, stack_settings)
        await create_event(client, redis, EVENT, **(event_rules or {"opens_in": 0.1}))
        yield Stack(client, stack_settings, engine, redis, catcher)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await engine.dispose()
        smtp.stop()


def idempotency_key() -> str:
    return secrets.token_urlsafe(16)
