"""The queue service's gRPC admin API and health service, end to end over a real port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio as grpc_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from queue_service import server as queue_server
from tests.conftest import ADMIN_TOKEN, schedule
from waitroom.pb.queue.v1 import queue_admin_pb2 as pb
from waitroom.pb.queue.v1 import queue_admin_pb2_grpc as pb_grpc
from waitroom.redis_server import free_port
from waitroom.settings import Settings

METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


@pytest.fixture
async def channel(settings: Settings, redis: Redis) -> AsyncIterator[grpc_aio.Channel]:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(
        queue_server.serve(settings.model_copy(update={"queue_grpc_port": port}), stop)
    )
    async with grpc_aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        await asyncio.wait_for(chan.channel_ready(), 5)
        yield chan
    stop.set()
    await task


async def test_admin_calls(channel: grpc_aio.Channel, redis: Redis) -> None:
    stub = pb_grpc.QueueAdminStub(channel)
    body: dict[str, Any] = await schedule(redis, opens_in=60)
    request = pb.PutEventRequest(
        event_id="camp",
        schedule=pb.EventSchedule(
            waiting_room_opens_at=body["waiting_room_opens_at"],
            opens_at=body["opens_at"],
            closes_at=body["closes_at"],
            admit_per_minute=300,
            max_active=500,
        ),
    )
    created = await stub.PutEvent(request, metadata=METADATA, timeout=5)
    assert created.created and created.event.state == "prequeue"
    assert len(created.event.draw_commitment) == 64 and created.event.draw_seed == ""
    again = await stub.PutEvent(request, metadata=METADATA, timeout=5)
    assert not again.created
    patched = await stub.PatchEvent(
        pb.PatchEventRequest(event_id="camp", admit_per_minute=120), metadata=METADATA, timeout=5
    )
    assert patched.schedule.admit_per_minute == 120
    paused = await stub.PauseEvent(pb.EventRef(event_id="camp"), metadata=METADATA, timeout=5)
    assert paused.paused
    resumed = await stub.ResumeEvent(pb.EventRef(event_id="camp"), metadata=METADATA, timeout=5)
    assert not resumed.paused
    stats = await stub.GetStats(pb.EventRef(event_id="camp"), metadata=METADATA, timeout=5)
    assert stats.state == "prequeue" and stats.eta_source == "configured"


async def test_errors_map_to_status_codes(channel: grpc_aio.Channel, redis: Redis) -> None:
    stub = pb_grpc.QueueAdminStub(channel)
    with pytest.raises(grpc_aio.AioRpcError) as caught:
        await stub.GetEvent(pb.EventRef(event_id="camp"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc_aio.AioRpcError) as caught:
        await stub.GetEvent(
            pb.EventRef(event_id="camp"), metadata=(("authorization", "Bearer no"),), timeout=5
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc_aio.AioRpcError) as caught:
        await stub.GetEvent(pb.EventRef(event_id="ghost"), metadata=METADATA, timeout=5)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc_aio.AioRpcError) as caught:
        await stub.PutEvent(
            pb.PutEventRequest(event_id="camp", schedule=pb.EventSchedule(opens_at="soon")),
            metadata=METADATA,
            timeout=5,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "opens_at" in (caught.value.details() or "")


async def test_health_service(channel: grpc_aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(
        health_pb2.HealthCheckRequest(service="waitroom.queue.v1.QueueAdmin"), timeout=5
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
