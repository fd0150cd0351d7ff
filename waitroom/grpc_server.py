"""Start and stop a grpc.aio server the same way in every service: its servicers, the
standard health service (SERVING while up, NOT_SERVING while draining), per-method
metrics, and the service's own interceptors."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio as grpc_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from waitroom.metrics import GRPC_HANDLED, GRPC_IN_FLIGHT, GRPC_LATENCY, GRPC_WAY_IN
from waitroom.rpc import RefusalInterceptor, sent_at_s, wrap_unary

log = logging.getLogger(__name__)
GRACE_S = 3.0


@dataclass(slots=True)
class RunningServer:
    server: grpc_aio.Server
    health: Any
    names: tuple[str, ...]
    port: int

    async def stop_serving(self) -> None:
        """Health says NOT_SERVING (load balancers stop sending); calls still complete."""
        for name in self.names:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace_s: float = GRACE_S) -> None:
        await self.stop_serving()
        await self.server.stop(grace_s)


class MetricsInterceptor(grpc_aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts and times every unary call by service, method and status code, counts the
    calls being served, and times the way in of the calls that say when they were sent."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        sent = sent_at_s(details.invocation_metadata)
        arrived = time.time()
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, _, method = details.method.lstrip("/").rpartition("/")
        if sent is not None:
            GRPC_WAY_IN.labels(service, method).observe(max(0.0, arrived - sent))
        inner = handler.unary_unary
        latency = GRPC_LATENCY.labels(service, method)
        in_flight = GRPC_IN_FLIGHT.labels(service, method)

        async def serve(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            in_flight.inc()
            try:
                return await inner(request, context)
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                if not isinstance(code, grpc.StatusCode):  # an int from the C core
                    code = next((c for c in grpc.StatusCode if c.value[0] == code), code)
                raise
            finally:
                in_flight.dec()
                name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                GRPC_HANDLED.labels(service, method, name).inc()
                latency.observe(time.perf_counter() - started)

        return wrap_unary(handler, serve)


async def start_server(
    host: str,
    port: int,
    add: Callable[[grpc_aio.Server], None],
    service_name: str,
    interceptors: Sequence[Any] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    """Serve on ``host:port`` (0 picks a free port; see ``RunningServer.port``), with TLS
    when ``credentials`` are given (``waitroom.tls.server_credentials``)."""
    # Refusals innermost: every interceptor outside it sees the call end with its status.
    server = grpc_aio.server(
        interceptors=[MetricsInterceptor(), *interceptors, RefusalInterceptor()]
    )
    add(server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{host}:{port}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    await server.start()
    names = ("", service_name)
    for name in names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, names, bound)


async def until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``serve(stop)``; SIGINT or SIGTERM sets ``stop``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(stop)
