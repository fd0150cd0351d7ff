"""``python -m queue_service``: the leader loop plus the gRPC admin API and health service."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import uvloop
from prometheus_client import REGISTRY

from queue_service.admin_grpc import AdminAuthInterceptor, QueueAdminServicer
from queue_service.metrics import EventCollector
from queue_service.service import QueueService
from waitroom import logs, metrics, tls
from waitroom.aio import loop_task
from waitroom.grpc_server import GRACE_S, start_server, until_signalled
from waitroom.pb.queue.v1 import queue_admin_pb2_grpc as pb_grpc
from waitroom.redis_conn import make_redis
from waitroom.scripts import register_scripts
from waitroom.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)
SERVICE_NAME = "waitroom.queue.v1.QueueAdmin"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop``: lead or stand by, serve admin calls, then drain and release."""
    if settings.admin_token is None:
        raise SettingsError("WAITROOM_ADMIN_TOKEN is required: the admin API never runs open")
    redis = make_redis(settings.redis_url, cluster=settings.redis_cluster)
    scripts = register_scripts(redis)
    instance = settings.instance or f"{socket.gethostname()}-{os.getpid()}"
    service = QueueService(redis, scripts, instance, settings.lease_ttl_ms, settings.tick_s)
    running = await start_server(
        settings.grpc_host,
        settings.queue_grpc_port,
        lambda server: pb_grpc.add_QueueAdminServicer_to_server(
            QueueAdminServicer(service.store), server
        ),
        SERVICE_NAME,
        [AdminAuthInterceptor(settings.admin_token.get_secret_value())],
        tls.server_credentials(settings),
    )
    log.info("queue service %s: gRPC on %s:%d", instance, settings.grpc_host, running.port)
    collector = EventCollector(service.store)
    REGISTRY.register(collector)
    metrics.serve(settings.grpc_host, settings.queue_metrics_port)
    outflow = loop_task(service.run(stop), "outflow", stop)
    await stop.wait()
    await running.stop_serving()
    await outflow
    await running.server.stop(GRACE_S)
    REGISTRY.unregister(collector)
    await redis.aclose()


def main() -> None:
    settings = load_settings()
    logs.setup("queue", settings.log_level, settings.log_format)

    uvloop.run(until_signalled(lambda stop: serve(settings, stop)))


if __name__ == "__main__":
    main()
