"""``python -m queue_service``: the leader loop plus the gRPC admin API and health service."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import uvloop
from grpc import aio as grpc_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from queue_service.admin_grpc import AdminAuthInterceptor, QueueAdminServicer
from queue_service.service import QueueService
from waitroom.pb.queue.v1 import queue_admin_pb2_grpc as pb_grpc
from waitroom.redis_conn import make_redis
from waitroom.scripts import register_scripts
from waitroom.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)
SERVICE_NAME = "waitroom.queue.v1.QueueAdmin"
GRACE_S = 3.0


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop``: lead or stand by, serve admin calls, then drain and release."""
    if settings.admin_token is None:
        raise SettingsError("WAITROOM_ADMIN_TOKEN is required: the admin API never runs open")
    redis = make_redis(settings.redis_url)
    scripts = register_scripts(redis)
    instance = settings.instance or f"{socket.gethostname()}-{os.getpid()}"
    service = QueueService(redis, scripts, instance, settings.lease_ttl_ms, settings.tick_s)
    server = grpc_aio.server(
        interceptors=[AdminAuthInterceptor(settings.admin_token.get_secret_value())]
    )
    pb_grpc.add_QueueAdminServicer_to_server(QueueAdminServicer(service.store), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.queue_grpc_port}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("queue service %s: gRPC on %s:%d", instance, settings.grpc_host, port)
    loop_task = asyncio.create_task(service.run(stop))
    await stop.wait()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await loop_task
    await server.stop(GRACE_S)
    await redis.aclose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s queue %(levelname)s %(message)s")
    settings = load_settings()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    uvloop.run(run())


if __name__ == "__main__":
    main()
