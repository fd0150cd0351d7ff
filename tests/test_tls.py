"""Mutual TLS between the services (WAITROOM_TLS_*): a parent's whole night crosses
gateway -> cart service -> payment adapter encrypted, and a service refuses a caller
in plaintext, without a certificate, or with one its CA did not sign."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.registration import ANNE, APPROVE, LEA, ROY, idempotency_key, registration_stack
from tests.support.certs import make_ca, make_cert
from waitroom.pb.cart.v1 import cart_pb2, cart_pb2_grpc
from waitroom.settings import Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


async def test_the_services_speak_mutual_tls_only(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
) -> None:
    ca, ca_key = make_ca(tmp_path)
    cert, key = make_cert(tmp_path, "waitroom-service", ca, ca_key)
    ledger = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    async with registration_stack(
        settings,
        redis,
        ledger,
        aiohttp_client,
        tls_cert_file=cert,
        tls_key_file=key,
        tls_ca_file=ca,
    ) as s:
        headers = await s.admitted()
        steps = [
            ("POST", "/cart/family", ROY),
            ("POST", "/cart/items", {"participant": LEA, "activity_ids": ["a78-w1"]}),
            ("PUT", "/cart/payer", {**ROY, "member": ANNE, "email": "anne.roy@example.org"}),
            ("PUT", "/cart/conditions", {"accepted": True}),
        ]
        for method, path, body in steps:
            status, answer = await s.call(method, path, headers, body)
            assert status == 200, (path, answer)
        card = {"number": APPROVE, "expiry": "12/30", "cvv": "123"}
        pay = {**headers, "Idempotency-Key": idempotency_key()}
        status, paid = await s.call("POST", "/cart/checkout", pay, {"card": card})
        assert (status, paid["outcome"]) == (200, "paid"), paid  # cart -> adapter in TLS too

        stranger_ca, stranger_key = make_ca(tmp_path, "someone else")
        stranger = make_cert(tmp_path, "stranger", stranger_ca, stranger_key)
        callers = {
            "plaintext": None,
            "no certificate": grpc.ssl_channel_credentials(root_certificates=ca.read_bytes()),
            "a certificate of another CA": grpc.ssl_channel_credentials(
                root_certificates=ca.read_bytes(),
                private_key=stranger[1].read_bytes(),
                certificate_chain=stranger[0].read_bytes(),
            ),
        }
        for who, credentials in callers.items():
            target = s.settings.cart_target
            channel = (
                grpc.aio.insecure_channel(target)
                if credentials is None
                else grpc.aio.secure_channel(target, credentials)
            )
            async with channel:
                stub = cart_pb2_grpc.CartServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.GetCart(
                        cart_pb2.GetCartRequest(), metadata=headers_of(headers), timeout=3
                    )
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, who


def headers_of(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", headers["Authorization"]),)


def test_tls_needs_its_three_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TLS"):
        Settings(tls_cert_file=tmp_path / "a.pem")
