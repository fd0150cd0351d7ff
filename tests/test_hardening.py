"""Pages and APIs a browser can defend, as served on the public internet: security
headers, no software version, cross-site calls refused, Secure cookies behind HTTPS,
malformed HTTP answered in JSON with one log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.conftest import create_event, gateway_client, join
from waitroom.settings import Settings

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]


async def test_pages_carry_a_strict_policy_and_no_version(client: Client, redis: Redis) -> None:
    await create_event(client, redis, opens_in=60)
    page = await client.get("/events/camp/")
    assert page.status == 200
    policy = page.headers["Content-Security-Policy"]
    for rule in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert rule in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "<noscript>" in await page.text()
    ticket = await join(client)
    answers = [
        page,
        await client.get("/api/v1/events/camp"),
        await client.get(f"/api/v1/events/camp/tickets/{ticket['ticket_id']}"),  # fast path
        await client.get("/static/app.css"),
        await client.get("/no/such/page"),
    ]
    for answer in answers:
        assert answer.headers["Server"] == "waitroom", answer.url
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.url


async def test_a_call_from_another_sites_page_is_refused(
    settings: Settings, redis: Redis, aiohttp_client: ClientFactory
) -> None:
    allowed = "https://inscriptions.example.ca"
    client = await gateway_client(
        aiohttp_client, settings.model_copy(update={"allowed_origins": [allowed]})
    )
    await create_event(client, redis, opens_in=60)
    join = "/api/v1/events/camp/tickets"
    resp = await client.post(join, headers={"Origin": "https://evil.example"})
    assert resp.status == 403 and (await resp.json())["error"] == "cross_origin"
    assert "Set-Cookie" not in resp.headers  # no ticket was made
    resp = await client.post(join, headers={"Origin": "null"})
    assert resp.status == 403
    own = f"http://{client.server.host}:{client.server.port}"
    for origin in (own, allowed):
        client.session.cookie_jar.clear()
        resp = await client.post(join, headers={"Origin": origin})
        assert resp.status == 201, origin
    client.session.cookie_jar.clear()
    assert (await client.post(join)).status == 201  # no Origin: curl, tools
    resp = await client.get("/api/v1/events/camp", headers={"Origin": "https://evil.example"})
    assert resp.status == 200  # reading is not changing
    resp = await client.delete("/api/v1/events/camp/cart/items/a/b", headers={"Origin": "x"})
    assert resp.status == 403


async def test_cookies_are_secure_when_served_over_https(
    settings: Settings, redis: Redis, aiohttp_client: ClientFactory
) -> None:
    plain = await gateway_client(aiohttp_client, settings)
    await create_event(plain, redis, opens_in=60)
    resp = await plain.post("/api/v1/events/camp/tickets")
    assert "Secure" not in resp.headers["Set-Cookie"]
    https = await gateway_client(
        aiohttp_client, settings.model_copy(update={"secure_cookies": True})
    )
    resp = await https.post("/api/v1/events/camp/tickets")
    assert resp.headers["Set-Cookie"].endswith("; Secure")
    resp = await https.get("/events/camp/?lang=en")
    assert "Secure" in resp.headers["Set-Cookie"]


async def _raw(client: Client, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS to a plain port
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_malformed_http_is_a_json_error_and_one_log_line(
    client: Client, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await _raw(client, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert 400 <= status < 500, head
    assert b"application/json" in head and body.startswith(b'{"error":'), answer[:300]
    assert data[:20] not in body  # nothing of the request is echoed
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]


def _address(settings: Settings, peer: str, forwarded: str | None, **update: object) -> str:
    from types import SimpleNamespace
    from typing import cast

    from aiohttp import web

    from gateway.public import client_address

    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    request = cast(web.BaseRequest, SimpleNamespace(remote=peer, headers=headers))
    return client_address(request, Settings(**{**settings.model_dump(), **update}))


def test_the_client_address_is_read_from_the_right_through_trusted_proxies(
    settings: Settings,
) -> None:
    spoof = "6.6.6.6, 203.0.113.7"  # the client wrote 6.6.6.6; the proxy added .7
    assert _address(settings, "10.0.0.2", spoof) == "10.0.0.2"  # off: the peer
    on = {"trust_forwarded_for": True}
    assert _address(settings, "10.0.0.2", spoof, **on) == "203.0.113.7"
    assert _address(settings, "10.0.0.2", None, **on) == "10.0.0.2"
    assert _address(settings, "10.0.0.2", "garbage", **on) == "10.0.0.2"
    chain = {**on, "trusted_proxies": "10.0.0.0/8, 192.0.2.1"}
    # client -> CDN edge (192.0.2.1) -> load balancer (10.0.0.2) -> gateway
    two_hops = "6.6.6.6, 203.0.113.7, 192.0.2.1"
    assert _address(settings, "10.0.0.2", two_hops, **chain) == "203.0.113.7"
    assert _address(settings, "10.0.0.2", "junk, 203.0.113.7", **chain) == "203.0.113.7"
    # A client reaching the gateway directly (not a trusted proxy) is who it is.
    assert _address(settings, "198.51.100.9", two_hops, **chain) == "198.51.100.9"
    assert _address(settings, "198.51.100.9", spoof, **on) == "198.51.100.9"  # default list
    # Two hundred spoofed joins from one address all count against that address.
    spoofed = {_address(settings, "10.0.0.2", f"1.2.3.{i}, 203.0.113.7", **on) for i in range(200)}
    assert spoofed == {"203.0.113.7"}
