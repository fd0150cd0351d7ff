"""Logs, one way for every process: text for a terminal (``make run``), JSON lines for a
log pipeline (``WAITROOM_LOG_FORMAT=json``, python-json-logger), at ``WAITROOM_LOG_LEVEL``.

Every line carries the process's service and the request id of the call it belongs to:
the gateway takes a parent's ``X-Request-Id`` (or makes one), answers it back, and passes
it to the cart service in the gRPC metadata (``x-request-id``), which passes it on to the
payment adapter; so one parent's click can be followed across the three services' logs.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
METADATA_KEY = "x-request-id"
HEADER = "X-Request-Id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class _RequestIds:
    """New request ids: 16 hex digits, a random prefix of the process and a counter.

    An id needs to be unique, not unguessable (it is logged and answered back, never
    trusted), and one is made for every request without one: a counter costs a third of
    ``secrets.token_hex``. A forked child draws its own prefix."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.counter = itertools.count(secrets.randbelow(1 << 31))

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFF:08x}"


_new_ids = _RequestIds()


def request_id_from(offered: str | None) -> str:
    """The caller's id when it is a sane one (a load balancer's, say), else a new one."""
    if offered and _VALID.match(offered):
        return offered
    return _new_ids.new()


def metadata() -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that carries the current request id on (none outside a request)."""
    current = REQUEST_ID.get()
    return ((METADATA_KEY, current),) if current else ()


class _Context(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = REQUEST_ID.get()
        return True


def setup(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Route every logger of the process to standard error in ``fmt`` at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context(service))
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{service}{request_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s%(rid)s")
        )
        handler.addFilter(_text_request_id)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _text_request_id(record: logging.LogRecord) -> bool:
    rid = getattr(record, "request_id", "")
    record.rid = f" [{rid}]" if rid else ""
    return True
