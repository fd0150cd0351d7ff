"""gRPC channels between the services, spread over every replica of the one called.

A target is what ``WAITROOM_CART_TARGET`` / ``WAITROOM_PAYMENT_TARGET`` say:

- ``host:port`` — one address (or every address its name resolves to);
- ``dns:///name:port`` — every address of a name, re-resolved when connections fail (a
  Kubernetes headless service);
- ``10.0.0.5:50052,10.0.0.6:50052`` — a list of IP addresses.

Every channel balances ``round_robin``: each call goes to the next ready replica, and a
replica that stops answering is left out until it is back, so one crashed replica costs
the calls in flight on it, not the night.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection
from typing import Any

import grpc

from waitroom import tls
from waitroom.settings import Settings

# A call that may run twice with the same effect (a read, a setting, a payment under its
# idempotency key) is tried again on the next replica when the one it reached is
# UNAVAILABLE (it crashed or is shutting down): the parent gets the answer instead of a
# 503, and a charge that went through before the crash is found again under its key and
# the session ends as paid. gRPC's own retry policy does it, within the call's deadline.
RETRY_POLICY = {
    # Up to ~5 s of tries (gRPC waits a random share of each back-off): long enough for
    # a supervisor to start a lone replica again, within the call's deadline.
    "maxAttempts": 5,
    "initialBackoff": "0.5s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def grpc_target(target: str) -> str:
    """The channel target for a setting: a comma list of IPs becomes ``ipv4:``/``ipv6:``."""
    parts = [p.strip() for p in target.split(",") if p.strip()]
    if len(parts) <= 1:
        return parts[0] if parts else target
    hosts = [p.rsplit(":", 1)[0].strip("[]") for p in parts]
    try:
        versions = {ipaddress.ip_address(h).version for h in hosts}
    except ValueError:
        raise ValueError(f"a list of targets takes IP addresses only: {target!r}") from None
    if len(versions) != 1:
        raise ValueError(f"a list of targets mixes IPv4 and IPv6: {target!r}")
    return f"ipv{versions.pop()}:{','.join(parts)}"


def service_config(service: str = "", repeatable: Collection[str] = ()) -> str:
    """Round robin, and the retry policy for ``service``'s ``repeatable`` methods."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if repeatable:
        names = [{"service": service, "method": method} for method in sorted(repeatable)]
        config["methodConfig"] = [{"name": names, "retryPolicy": RETRY_POLICY}]
    return json.dumps(config)


def service_channel(
    target: str,
    service: str = "",
    repeatable: Collection[str] = (),
    settings: Settings | None = None,
) -> grpc.aio.Channel:
    """A channel to every replica named by ``target``, round robin; calls of
    ``service``'s ``repeatable`` methods are retried on another replica when UNAVAILABLE.
    Mutual TLS when ``settings`` say so (waitroom/tls.py), plaintext otherwise."""
    options = [("grpc.service_config", service_config(service, repeatable))]
    credentials = None if settings is None else tls.channel_credentials(settings)
    if credentials is None or settings is None:
        return grpc.aio.insecure_channel(grpc_target(target), options=options)
    options += tls.channel_options(settings)
    return grpc.aio.secure_channel(grpc_target(target), credentials, options=options)
