"""Redis clients, built one way for every process."""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def make_redis(url: str, max_connections: int = 64, cluster: bool = False) -> Redis:
    """A client with short timeouts and a bounded retry: fail fast to a 503, not a hang.

    ``cluster``: ``url`` names any node of a Redis Cluster. The cluster client speaks the
    same commands, scripts and pipelines (every multi-key operation of ours stays within
    one event's hash tag), so callers keep the ``Redis`` type. Its retries are longer: a
    replica takes over 2-3 s after its master dies, and the client must ride through it
    (re-reading the slot map) rather than fail every call of those seconds."""
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
        "health_check_interval": 15,
        "max_connections": max_connections,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if cluster:
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=10)
        return cast(Redis, RedisCluster.from_url(url, retry=retry, **common))
    return Redis.from_url(
        url, retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2), **common
    )
