"""``python -m waitroom.healthcheck``: is the process in this container alive?

One image runs any of the four processes, so its ``HEALTHCHECK`` cannot know which one
it is checking: it asks each port the settings give, on this host, and is healthy as
soon as one answers — the gateway's ``/healthz`` with 200, or a gRPC service's standard
health check with SERVING. Exit 0 when healthy, 1 otherwise (Docker's convention).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from waitroom import tls
from waitroom.settings import Settings

TIMEOUT_S = 2.0


def _http_alive(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def _channel(port: int, settings: Settings) -> grpc.Channel:
    credentials = tls.channel_credentials(settings)
    if credentials is None:
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials, tls.channel_options(settings))


def _grpc_serving(port: int, settings: Settings) -> bool:
    with _channel(port, settings) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def healthy(settings: Settings) -> bool:
    if _http_alive(settings.http_port):
        return True
    ports = (settings.queue_grpc_port, settings.cart_grpc_port, settings.payment_grpc_port)
    return any(_grpc_serving(port, settings) for port in ports)


def main() -> int:
    return 0 if healthy(Settings()) else 1


if __name__ == "__main__":
    sys.exit(main())
