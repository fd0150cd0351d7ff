"""JSON replies: every answer, errors included, is JSON; never an HTML page or a traceback.

The poll path is the load, so public errors are caught by a decorator on each handler
and unmatched paths by a last catch-all route, rather than by middlewares, which aiohttp
runs on every request at a measurable cost (see ``make bench``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway import observe
from gateway.state import gateway_of
from waitroom import logs
from waitroom.redis_conn import describe
from waitroom.redis_conn import unavailable as redis_unavailable

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


# On every answer: no software version in Server, and no content sniffing.
BASE_HEADERS = {"Server": "waitroom", "X-Content-Type-Options": "nosniff"}
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", **BASE_HEADERS}
# What aiohttp copies into each response: a copy of a CIMultiDict costs a third of one
# made from a dict, and most answers (the polls) add nothing to these.
_JSON_HEADERS_CI = CIMultiDict(_JSON_HEADERS)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def reply(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response (``application/json; charset=utf-8``)."""
    all_headers = _JSON_HEADERS_CI
    if headers is not None:
        all_headers = _JSON_HEADERS_CI.copy()
        all_headers.update(headers)
    return web.Response(body=orjson.dumps(body), status=status, headers=all_headers)


def error(
    status: int, code: str, headers: Mapping[str, str] | None = None, **extra: object
) -> web.Response:
    """A JSON error ``{"error": code, ...extra}``."""
    return reply({"error": code, **extra}, status=status, headers=headers)


def bearer_token(request: web.BaseRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def unavailable() -> web.Response:
    return error(503, "unavailable", headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)})


class ApiError(Exception):
    """Raised anywhere under a handler: answered as ``{"error": code, **extra}``."""

    def __init__(self, status: int, code: str, **extra: object) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.extra = extra


async def answering_errors(
    request: web.BaseRequest,
    call: Callable[[], Awaitable[web.StreamResponse]],
    route: str | None = None,
    origins: Collection[str] = (),
) -> web.StreamResponse:
    """Run ``call()``; turn ApiError, aiohttp's errors, Redis outages and bugs into JSON.
    A state-changing call from another site's page is refused first (``origins``: the
    other sites allowed). Every answer is counted and timed under ``route`` (by default
    the matched route)."""
    started = time.perf_counter()
    # The request id its logs carry and the gRPC calls pass on; answered back.
    request_id = logs.request_id_from(request.headers.get(logs.HEADER))
    token = logs.REQUEST_ID.set(request_id)
    # One coroutine, not two: a join suspends on its Redis script, and every layer of
    # coroutines is stepped again on the way back.
    try:
        if request.method not in SAFE_METHODS and "Origin" in request.headers:
            refuse_cross_origin(request, origins)
        response = await call()
    except Exception as exc:
        response = _error_answer(request, exc)
    finally:
        logs.REQUEST_ID.reset(token)
    if not response.prepared:
        response.headers[logs.HEADER] = request_id
    if route is None:
        info = getattr(request, "match_info", None)
        resource = info.route.resource if info is not None else None
        route = resource.canonical if resource is not None else "unmatched"
    observe.request(route, request.method, response.status, time.perf_counter() - started)
    return response


def _error_answer(request: web.BaseRequest, exc: Exception) -> web.StreamResponse:
    """The JSON answer to an exception raised under a handler; aiohttp's own redirects
    and the like (an HTTPException below 400) are raised on."""
    if isinstance(exc, ApiError):
        return reply({"error": exc.code, **exc.extra}, status=exc.status)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return error(exc.status, _CODES.get(exc.status, "error"))
    if redis_unavailable(exc):  # down, or failing over
        log.warning(
            "redis unavailable during %s %s: %s", request.method, request.path, describe(exc)
        )
        return unavailable()
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error(500, "internal")


def refuse_cross_origin(request: web.BaseRequest, allowed: Collection[str]) -> None:
    """A state-changing call from another site's page (its ``Origin`` is neither this
    host nor an allowed origin): 403 ``cross_origin``. Cookies are SameSite=Lax and the
    API reads tokens from a header, so this is defence in depth, and it keeps other
    sites from making tickets in a visitor's name."""
    origin = request.headers["Origin"].rstrip("/")
    scheme, sep, host = origin.partition("://")
    if sep and scheme in ("http", "https") and host == request.host:
        return
    if origin in allowed:
        return
    raise ApiError(403, "cross_origin")


async def harden(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the base headers on answers that are not ours to build
    (static files, aiohttp's own). Polls on the fast path never come here (their JSON
    headers carry them), so the signal costs the load nothing."""
    headers = response.headers
    for name, value in BASE_HEADERS.items():
        if name == "Server" or name not in headers:
            headers[name] = value


def json_errors(handler: Handler) -> Handler:
    """A handler whose errors are answered in JSON (see ``answering_errors``)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        origins = gateway_of(request).settings.allowed_origins
        return await answering_errors(request, lambda: handler(request), origins=origins)

    return wrapped


FALLBACK_PATH = "/{unmatched:.*}"


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The last route: 405 (with ``Allow``) when the path exists for other methods, else 404."""
    allowed: set[str] = set()
    this = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is this:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        return error(405, "method_not_allowed", headers={"Allow": ",".join(sorted(allowed))})
    return error(404, "not_found")
