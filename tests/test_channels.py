"""Channels between the services: round robin over every replica, and the retry policy
that sends a repeatable call to the next replica when the one reached is UNAVAILABLE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from waitroom.channels import grpc_target, service_channel, service_config
from waitroom.pb.cart.v1 import cart_pb2 as pb
from waitroom.pb.cart.v1 import cart_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["CartService"].full_name


Context = grpc.aio.ServicerContext[Any, Any]


class Replica:
    """A cart-service replica answering Checkout and AddItems; ``crashing``: every call
    it receives ends UNAVAILABLE (it is going down)."""

    def __init__(self, crashing: bool) -> None:
        self.crashing = crashing
        self.calls = 0

    async def _answer(self, context: Context) -> None:
        self.calls += 1
        if self.crashing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "going down")

    async def checkout(self, request: pb.CheckoutRequest, context: Context) -> pb.CheckoutReply:
        await self._answer(context)
        return pb.CheckoutReply(outcome="paid")

    async def add_items(self, request: pb.AddItemsRequest, context: Context) -> pb.AddItemsReply:
        await self._answer(context)
        return pb.AddItemsReply()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Checkout": grpc.unary_unary_rpc_method_handler(
                    self.checkout,
                    request_deserializer=pb.CheckoutRequest.FromString,
                    response_serializer=pb.CheckoutReply.SerializeToString,
                ),
                "AddItems": grpc.unary_unary_rpc_method_handler(
                    self.add_items,
                    request_deserializer=pb.AddItemsRequest.FromString,
                    response_serializer=pb.AddItemsReply.SerializeToString,
                ),
            },
        )


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, str]]:
    crashing = Replica(crashing=True)
    servers, ports = [], []
    for replica in (crashing, Replica(crashing=False)):
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((replica.handler(),))
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    try:
        yield crashing, ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        for server in servers:
            await server.stop(None)


async def test_a_repeatable_call_is_answered_by_the_next_replica(
    replicas: tuple[Replica, str],
) -> None:
    crashing, target = replicas
    async with service_channel(target, SERVICE, ("Checkout",)) as channel:
        stub = pb_grpc.CartServiceStub(channel)
        for _ in range(10):
            reply = await stub.Checkout(pb.CheckoutRequest(idempotency_key="k" * 16), timeout=5)
            assert reply.outcome == "paid"
        assert crashing.calls >= 1  # round robin reached the crashing replica, and retried
        # A call not declared repeatable is not tried twice: it reports the failure.
        failed = 0
        for _ in range(10):
            try:
                await stub.AddItems(pb.AddItemsRequest(), timeout=5)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.UNAVAILABLE
                failed += 1
        assert 1 <= failed < 10


def test_the_service_config_names_the_repeatable_methods_only() -> None:
    config = json.loads(service_config(SERVICE, ("GetCart", "Checkout")))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [
        {"service": SERVICE, "method": "Checkout"},
        {"service": SERVICE, "method": "GetCart"},
    ]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert "methodConfig" not in json.loads(service_config())


def test_a_list_of_addresses_becomes_an_ipv4_target() -> None:
    assert grpc_target("10.0.0.5:1,10.0.0.6:1") == "ipv4:10.0.0.5:1,10.0.0.6:1"
    assert grpc_target("cart:50052") == "cart:50052"
