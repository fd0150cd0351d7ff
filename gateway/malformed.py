"""Requests that are not HTTP, or not well-formed HTTP, answered as the API answers: JSON.

aiohttp answers a request its parser refuses with a plain-text page that echoes the bytes
it could not read, and logs each at ERROR with a full traceback: on the public internet
(scanners, TLS to a plain port) that is an open door to log floods. Here each such request
is one WARNING line (where from, what was wrong, at most 200 characters) and a JSON
``{"error": "bad_request"}`` (or the status aiohttp chose), the connection then closed.
aiohttp has no option for the handler class of its server, so ``install`` gives the
runner's server a subclass whose only change is the handler it makes.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.replies import BASE_HEADERS

log = logging.getLogger(__name__)
_CODES = {400: "bad_request", 413: "payload_too_large", 414: "uri_too_long"}


class JsonErrorHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # a bug or a timeout in our code: aiohttp's own logging, as before
            return super().handle_error(request, status, exc, message)
        what = repr(exc if exc is not None else message)[:200]
        log.warning("malformed request from %s: %d %s", request.remote, status, what)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent")
        code = _CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
        response = web.Response(
            status=status,
            body=orjson.dumps({"error": code}),
            headers={"Content-Type": "application/json; charset=utf-8", **BASE_HEADERS},
        )
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)


def install(runner: web.BaseRunner) -> None:
    """Answer malformed requests in JSON on ``runner``'s server (after ``runner.setup()``)."""
    server = runner.server
    if server is None:
        raise RuntimeError("install after runner.setup()")
    if type(server) is not web.Server:
        raise TypeError(f"unexpected server class {type(server).__name__}")
    server.__class__ = _JsonErrorServer
