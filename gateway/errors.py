"""Every error is JSON with a code; never an HTML page or a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER_UNAVAILABLE_S = 2

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def json_error(
    status: int, code: str, headers: dict[str, str] | None = None, **extra: object
) -> web.Response:
    """A JSON error response ``{"error": code, ...extra}``."""
    return web.json_response({"error": code, **extra}, status=status, headers=headers)


def unavailable() -> web.Response:
    return json_error(503, "unavailable", headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's own errors, Redis outages and bugs into JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, _CODES.get(exc.status, "error"))
    except (RedisError, OSError, TimeoutError):
        log.warning("redis unavailable during %s %s", request.method, request.path)
        return unavailable()
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal")
