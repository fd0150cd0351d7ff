"""A database that cannot be reached (PostgreSQL restarting, a failover) fails a call
UNAVAILABLE, which the callers' channels try again, with one log line every few
seconds; a wrong statement still fails as the bug it is (UNKNOWN)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service.payment_port import CardInput, PaymentUnreachable
from cart_service.payments_client import GrpcPayments
from waitroom.channels import service_channel
from waitroom.db import make_engine, reading, unreachable
from waitroom.grpc_server import RunningServer, start_server
from waitroom.pb.cart.v1 import cart_pb2 as pb
from waitroom.pb.cart.v1 import cart_pb2_grpc as pb_grpc
from waitroom.pb.payment.v1 import payment_pb2 as pay_pb
from waitroom.redis_server import free_port
from waitroom.rpc import refusal_of
from waitroom.validation import Unavailable

SERVICE = pb.DESCRIPTOR.services_by_name["CartService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]


class Replica:
    """Answers GetCart by reading from ``engine``; ``statement`` is what it runs."""

    def __init__(self, engine: AsyncEngine, statement: str = "SELECT 1") -> None:
        self.engine = engine
        self.statement = statement
        self.calls = 0
        self.called = asyncio.Event()

    async def get_cart(self, request: pb.GetCartRequest, context: Context) -> pb.Cart:
        self.calls += 1
        self.called.set()
        async with reading(self.engine) as conn:
            await conn.execute(text(self.statement))
        return pb.Cart()

    def add(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            self.get_cart,
            request_deserializer=pb.GetCartRequest.FromString,
            response_serializer=pb.Cart.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"GetCart": handler}),)
        )


def _down() -> AsyncEngine:
    """An engine toward a PostgreSQL that is not there (a port nobody listens on)."""
    return make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test")


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    await engine.dispose()


async def _serve(replica: Replica) -> RunningServer:
    return await start_server("127.0.0.1", 0, replica.add, SERVICE)


async def test_an_unreachable_database_answers_unavailable_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    replica = Replica(_down())
    running = await _serve(replica)
    caplog.set_level(logging.INFO)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CartServiceStub(channel)
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.GetCart(pb.GetCartRequest(), timeout=10)
                assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
                refusal = refusal_of(failed.value)
                assert isinstance(refusal, Unavailable)
                assert (refusal.code, refusal.extra) == ("unavailable", {"reason": "database"})
    finally:
        await running.stop(0)
        await replica.engine.dispose()
    assert replica.calls == 3
    lines = [r for r in caplog.records if "database unreachable" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "GetCart" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no tracebacks


async def test_a_repeatable_call_goes_through_once_the_database_is_back(
    sqlite_engine: AsyncEngine,
) -> None:
    replica = Replica(_down())
    running = await _serve(replica)
    try:
        target = f"127.0.0.1:{running.port}"
        async with service_channel(target, SERVICE, ("GetCart",)) as channel:
            stub = pb_grpc.CartServiceStub(channel)
            down = replica.engine
            call = stub.GetCart(pb.GetCartRequest(), timeout=10)
            await replica.called.wait()
            replica.engine = sqlite_engine  # the database comes back during the retries
            await down.dispose()
            assert await call == pb.Cart()
    finally:
        await running.stop(0)
    assert replica.calls >= 2  # failed UNAVAILABLE once, tried again by the channel


async def test_a_wrong_statement_is_not_taken_for_an_outage(sqlite_engine: AsyncEngine) -> None:
    replica = Replica(sqlite_engine, "SELECT * FROM no_such_table")
    running = await _serve(replica)
    try:
        target = f"127.0.0.1:{running.port}"
        async with service_channel(target, SERVICE, ("GetCart",)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await pb_grpc.CartServiceStub(channel).GetCart(pb.GetCartRequest(), timeout=10)
    finally:
        await running.stop(0)
    assert failed.value.code() is grpc.StatusCode.UNKNOWN
    assert replica.calls == 1  # a bug is not tried again


def test_what_counts_as_unreachable() -> None:
    assert unreachable(ConnectionRefusedError(111, "refused"))
    assert unreachable(sqlite3.OperationalError("database is locked"))
    try:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert unreachable(outer)  # found along the chain of causes

    class Shutdown(Exception):
        sqlstate = "57P01"  # admin_shutdown: PostgreSQL going down

    assert unreachable(Shutdown())
    assert not unreachable(sqlite3.OperationalError("no such table: carts"))
    assert not unreachable(ValueError("bad"))


async def test_an_adapter_without_its_database_leaves_the_charge_unknown() -> None:
    """The adapter may have sent the charge before its database failed: the cart service
    must keep the cart locked until settled, never take it for a refusal."""
    adapter = Replica(_down())
    name = pay_pb.DESCRIPTOR.services_by_name["PaymentAdapter"].full_name
    handler = grpc.unary_unary_rpc_method_handler(
        adapter.get_cart,
        request_deserializer=pay_pb.ChargeRequest.FromString,
        response_serializer=pb.Cart.SerializeToString,
    )
    running = await start_server(
        "127.0.0.1",
        0,
        lambda server: server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(name, {"Charge": handler}),)
        ),
        name,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            payments = GrpcPayments(channel, "token", charge_timeout_s=10, deadline_s=10)
            with pytest.raises(PaymentUnreachable):
                await payments.charge("k" * 16, "cart", 100, "CAD", CardInput("", "", "", "t"), "x")
    finally:
        await running.stop(0)
        await adapter.engine.dispose()
    assert adapter.calls == 1
