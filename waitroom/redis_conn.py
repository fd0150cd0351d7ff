"""Redis clients, built one way for every process."""

from __future__ import annotations

import logging
import traceback
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, SlotNotCoveredError
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


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis cannot answer now (down, unreachable, failing over), as
    opposed to a bug. Besides ``RedisError`` and socket errors, the cluster client raises
    some outside that hierarchy: ``SlotNotCoveredError`` while a replica takes over (the
    slot map it re-read has no master for the key yet), ``RedisClusterException`` "cannot
    be connected" raised from a connection error when no node answers (this host's link
    is down), and a closed connection's leak (``lost_connection``). The fault drill found
    each of them ending a background loop that caught only ``RedisError``."""
    if isinstance(exc, RedisError | SlotNotCoveredError | OSError) or lost_connection(exc):
        return True
    if isinstance(exc, RedisClusterException):
        cause = exc.__cause__ or exc.__context__
        return cause is not None and unavailable(cause)
    return False


def describe(exc: BaseException) -> str:
    """``Type: message`` for a log line (redis-py's own repr drops the message)."""
    return f"{type(exc).__name__}: {exc}"


def lost_connection(exc: BaseException) -> bool:
    """An error the Redis client raised for a connection that closed under it, but not as
    a ``RedisError``: with a Redis Cluster failing over, redis-py 8.1's asyncio client can
    write on a connection whose transport just closed and leak ``AttributeError``,
    ``TypeError`` or (on uvloop) ``RuntimeError`` (redis-py issue 4287, fixed upstream
    after 8.1.0). Callers treat it as Redis being unavailable, as they do a
    ``ConnectionError``; any other error of those types stays a bug."""
    if not isinstance(exc, AttributeError | TypeError | RuntimeError):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return any(
        frame.filename.endswith(("redis/asyncio/connection.py", "redis/asyncio/cluster.py"))
        and "send_packed_command" in frame.name
        for frame in frames
    )


class RedisOutageLog:
    """What a loop that works with Redis says of its failures: an outage (``unavailable``)
    once as it begins and once as it ends, any other error each time, with its traceback."""

    def __init__(self, logger: logging.Logger, failed: str, recovered: str) -> None:
        self._log = logger
        self._failed = failed
        self._recovered = recovered
        self.failing = False

    def failure(self, exc: Exception) -> None:
        if not unavailable(exc):
            self._log.error(self._failed, exc_info=exc)
        elif not self.failing:
            self._log.warning("%s, redis unavailable: %s", self._failed, describe(exc))
        self.failing = True

    def success(self) -> None:
        if self.failing:
            self._log.warning(self._recovered)
        self.failing = False
