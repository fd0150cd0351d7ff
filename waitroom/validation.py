"""Refusals the caller can act on: the API returns ``code``, the page shows it beside ``field``.

Domain code raises these; each boundary maps the kind once: gRPC status in
``waitroom.rpc``, HTTP status in the gateway. ``extra`` carries details the page may show
(the accepted ages, the time a lock lifts), as strings.
"""

from __future__ import annotations


class Refused(Exception):
    """A request refused for a reason its caller can act on (HTTP 409 by default)."""

    kind = "conflict"

    def __init__(self, code: str, field: str = "", **extra: str) -> None:
        super().__init__(f"{field}: {code}" if field else code)
        self.code = code
        self.field = field
        self.extra = extra


class FieldError(Refused, ValueError):
    """One input field is wrong: ``code`` says how, ``field`` says which (HTTP 422)."""

    kind = "invalid"

    def __init__(self, code: str, field: str, **extra: str) -> None:
        super().__init__(code, field, **extra)


class NotFound(Refused):
    """What the request names does not exist (HTTP 404)."""

    kind = "not_found"


class Unauthenticated(Refused):
    """No valid credentials (HTTP 401)."""

    kind = "unauthenticated"


class Unavailable(Refused):
    """A service behind this one is down or saturated; try again (HTTP 503)."""

    kind = "unavailable"


KINDS: dict[str, type[Refused]] = {
    cls.kind: cls for cls in (Refused, FieldError, NotFound, Unauthenticated, Unavailable)
}


def refused(kind: str, code: str, field: str = "", **extra: str) -> Refused:
    """Rebuild a refusal of ``kind`` (as carried across a process boundary)."""
    cls = KINDS.get(kind, Refused)
    if cls is FieldError:
        return FieldError(code, field, **extra)
    return cls(code, field, **extra)
