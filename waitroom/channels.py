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

import grpc

ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


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


def service_channel(target: str) -> grpc.aio.Channel:
    """An insecure channel to every replica named by ``target``, round robin."""
    return grpc.aio.insecure_channel(
        grpc_target(target), options=[("grpc.service_config", ROUND_ROBIN)]
    )
