"""Past an address's join limit, a proof of work instead of a refusal: a script pays for
every ticket, a parent behind a shared address is never turned away."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway import proof
from tests.conftest import create_event, gateway_client
from waitroom.settings import Settings

Client = TestClient[Any, Any]
JOIN = "/api/v1/events/camp/tickets"


async def _flooded(
    settings: Settings, redis: Redis, aiohttp_client: Callable[..., Awaitable[Client]]
) -> tuple[Client, Any]:
    """A gateway whose one address has used its joins; the 429 that says so."""
    limited = {"join_limit": 2, "join_window_s": 60, "join_proof_bits": 10}
    client = await gateway_client(aiohttp_client, settings.model_copy(update=limited))
    await create_event(client, redis, opens_in=60)
    for _ in range(2):
        client.session.cookie_jar.clear()
        assert (await client.post(JOIN)).status == 201
    client.session.cookie_jar.clear()
    refused = await client.post(JOIN)
    assert refused.status == 429
    assert await refused.json() == {"error": "rate_limited"}  # the contract's body
    return client, refused


async def test_a_solved_challenge_buys_one_ticket_once(
    settings: Settings, redis: Redis, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client, refused = await _flooded(settings, redis, aiohttp_client)
    challenge = refused.headers[proof.CHALLENGE_HEADER]
    bits = int(refused.headers[proof.BITS_HEADER])
    assert bits == 10
    solved = f"{challenge}:{proof.solve(challenge, bits)}"
    resp = await client.post(JOIN, headers={proof.HEADER: solved})
    assert resp.status == 201 and (await resp.json())["status"] == "prequeue"
    client.session.cookie_jar.clear()
    again = await client.post(JOIN, headers={proof.HEADER: solved})
    assert again.status == 429  # a proof is single-use
    fresh = again.headers[proof.CHALLENGE_HEADER]
    assert fresh != challenge


async def test_unsolved_forged_or_foreign_proofs_are_refused(
    settings: Settings, redis: Redis, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client, refused = await _flooded(settings, redis, aiohttp_client)
    challenge = refused.headers[proof.CHALLENGE_HEADER]
    nonce = 0  # a nonce that does not reach 10 zero bits
    while proof.leading_zero_bits(hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()) >= 10:
        nonce += 1
    now = int(time.time())
    forged = jwt.encode(
        {"iss": "waitroom-join-proof", "aud": "camp", "iat": now, "exp": now + 60,
         "bits": 0, "jti": "x"},
        b"not the key, but long enough for HS256", algorithm="HS256",
    )  # fmt: skip
    other_event = proof.challenge(b"k" * 32, "swim", 1)
    for shown in (
        f"{challenge}:{nonce}",
        f"{forged}:0",
        f"{other_event}:{proof.solve(other_event, 1)}",
        "no-colon",
        f"{challenge}:" + "9" * 40,
    ):
        client.session.cookie_jar.clear()
        resp = await client.post(JOIN, headers={proof.HEADER: shown})
        assert resp.status == 400 and (await resp.json())["error"] == "bad_proof", shown


def test_the_work_is_what_the_bits_say() -> None:
    assert proof.leading_zero_bits(b"\x00\x00\x80" + b"\xff" * 29) == 16
    assert proof.leading_zero_bits(b"\x0f" + b"\xff" * 31) == 4
    text = proof.challenge(b"k" * 32, "camp", 12)
    assert proof.verify(b"k" * 32, "camp", f"{text}:{proof.solve(text, 12)}")
