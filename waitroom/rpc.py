"""What the gRPC services share: refusals with an error code, and who is calling.

A refusal is a gRPC status carrying the standard ``google.rpc.ErrorInfo`` detail (via
``grpcio-status``): ``reason`` is the API's error code (``activity_full``,
``invalid_phone``, ...) and ``metadata["field"]`` the input field concerned, so the
gateway can answer ``{"error": code, "field": field}`` without parsing messages.

Callers are checked offline by ``CallerInterceptor``: a parent's admission token
(``authorization: Bearer <jwt>``, verified with the public keys, no round trip) or, for
calls no parent made (reconciliation), the services' own token.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from waitroom import logs
from waitroom.db import unreachable
from waitroom.tokens import AdmissionVerifier, InvalidAdmission
from waitroom.validation import Refused, Unauthenticated, Unavailable, refused

log = logging.getLogger(__name__)
DOMAIN = "waitroom"
_DETAILS_KEY = "grpc-status-details-bin"


_STATUS = {
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}
_KIND = {status: kind for kind, status in _STATUS.items()}


def rich_status(refusal: Refused) -> grpc.Status:
    """The gRPC status of a refusal: code by kind, ErrorInfo with its code and field."""
    metadata = {**refusal.extra, **({"field": refusal.field} if refusal.field else {})}
    info = error_details_pb2.ErrorInfo(reason=refusal.code, domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = _STATUS.get(refusal.kind, grpc.StatusCode.FAILED_PRECONDITION)
    text = f"{refusal}: {refusal.extra['detail']}" if "detail" in refusal.extra else str(refusal)
    message = status_pb2.Status(code=status.value[0], message=text, details=[detail])
    return rpc_status.to_status(message)


async def abort(context: grpc.aio.ServicerContext[Any, Any], refusal: Refused) -> NoReturn:
    """End the call with ``refusal`` as its status and ErrorInfo."""
    # grpc-stubs lacks the aio context's abort_with_status (grpcio has it since 1.38).
    await cast(Any, context).abort_with_status(rich_status(refusal))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def refusal_of(exc: grpc.aio.AioRpcError) -> Refused | None:
    """The refusal a service sent (its ErrorInfo), or None for any other failure."""
    trailers: Any = exc.trailing_metadata() or ()
    for key, value in trailers:
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:
                meta = dict(info.metadata)
                field = meta.pop("field", "")
                kind = _KIND.get(exc.code(), "conflict")
                return refused(kind, info.reason, field, **meta)
    return None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a call: an admitted session (event and ticket) or another service."""

    event_id: str
    ticket_id: str
    arrival: int
    service: bool = False
    # The client number an admission's family claim names (one chance per family).
    family: str = ""


SERVICE_CALLER = Caller(event_id="", ticket_id="", arrival=0, service=True)
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("waitroom_caller")


def caller() -> Caller:
    """The verified caller of the gRPC call being served (set by CallerInterceptor)."""
    return _CALLER.get()


# When the caller sent the call (its wall clock, in microseconds): the server times its
# way in, from the caller's send to the handler's start (waitroom/grpc_server.py).
SENT_AT = "waitroom-sent-at-us"


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call's credential, the request id it belongs to (waitroom/logs.py), and when
    it is sent."""
    return (
        ("authorization", f"Bearer {token}"),
        *logs.metadata(),
        (SENT_AT, str(time.time_ns() // 1000)),
    )


def sent_at_s(metadata: Any) -> float | None:
    """When the caller sent the call (seconds since the epoch), if it said."""
    for key, value in metadata or ():
        if key == SENT_AT:
            try:
                return int(value) / 1_000_000
            except ValueError:
                return None
    return None


def wrap_unary(
    handler: Any, serve: Callable[[Any, Any], Awaitable[Any]]
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with its unary behaviour replaced by ``serve`` (same (de)serializers):
    how an interceptor runs code around every call of a method."""
    return grpc.unary_unary_rpc_method_handler(
        serve,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any]"]]


class CallerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every call of ``service`` needs an admission token or the service token.

    The admission token is verified offline (signature, expiry, key id); its event is
    the only event the call may touch. ``open_methods`` need no token (receipt reprint).
    Calls that are not ``service``'s (the health service) pass untouched.
    """

    def __init__(
        self,
        service: str,
        verifier: AdmissionVerifier,
        service_token: str,
        open_methods: Collection[str] = (),
        services_only: bool = False,
    ) -> None:
        self._prefix = f"/{service}/"
        self._verifier = verifier
        self._service_token = f"Bearer {service_token}".encode()
        self._open = {f"/{service}/{name}" for name in open_methods}
        # True: only the service credential is accepted (the payment adapter: its one
        # caller is the cart service; a parent's admission token opens nothing there).
        self._services_only = services_only

    def _caller(self, authorization: str) -> Caller | None:
        if hmac.compare_digest(authorization.encode(), self._service_token):
            return SERVICE_CALLER
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            admission = self._verifier.verify_any_event(token.strip())
        except InvalidAdmission:
            return None
        return Caller(
            admission.event_id, admission.ticket_id, admission.arrival, family=admission.family
        )

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        if not method.startswith(self._prefix) or method in self._open:
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        raw = metadata.get("authorization", "")
        offered = metadata.get(logs.METADATA_KEY, "")
        request_id = logs.request_id_from(offered if isinstance(offered, str) else "")
        who = self._caller(raw if isinstance(raw, str) else bytes(raw).decode("latin-1"))
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def serve(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if who is None:
                await abort(context, Unauthenticated("invalid_token"))
            if self._services_only and not who.service:
                await abort(context, Unauthenticated("service_credential_required"))
            token = _CALLER.set(who)
            logs.REQUEST_ID.set(request_id)  # this call's task: its logs carry it
            try:
                return await cast(Any, inner)(request, context)
            finally:
                _CALLER.reset(token)

        return wrap_unary(handler, serve)


class RefusalInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every unary call of the server runs to its end, and a domain refusal it raises
    becomes its rich status (``abort``): servicers translate and call, nothing more.

    Running to the end: a client that gives up (deadline, cancel) cancels the handler's
    task, which would stop a ledger transaction between two statements and leave its
    connection to be cleaned up by the pool (on SQLite, holding the database's write
    lock meanwhile). The handler runs shielded instead: the change commits or rolls back
    whole, and the client that retries sees it.

    A call that failed because the database could not be reached (``db.unreachable``: a
    restart, a failover) is answered UNAVAILABLE, which callers' channels try again on
    any replica (``waitroom.channels``), and logged as one line every few seconds with
    the count since the last, not a traceback per call: a one-second restart of
    PostgreSQL under load once wrote 22 000 lines.
    """

    def __init__(self) -> None:
        self._outage = _OutageLog()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def answer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await cast(Any, inner)(request, context)
            except Refused as refusal:
                await abort(context, refusal)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self._outage.note(method, exc)
                await abort(context, Unavailable("unavailable", reason="database"))

        async def serve(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            task = asyncio.ensure_future(answer(request, context))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(_after_cancel)
                raise

        return wrap_unary(handler, serve)


class _OutageLog:
    """At most one warning per ``every_s`` about calls failed on an unreachable database."""

    def __init__(self, every_s: float = 5.0) -> None:
        self._every_s = every_s
        self._next = 0.0
        self._since = 0

    def note(self, method: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now < self._next:
            self._since += 1
            return
        more = f" ({self._since} more calls since the last line)" if self._since else ""
        log.warning(
            "database unreachable, answered UNAVAILABLE: %s in %s: %s%s",
            type(exc).__name__, method, str(exc).splitlines()[0][:200] if str(exc) else "", more,
        )  # fmt: skip
        self._next, self._since = now + self._every_s, 0


def _after_cancel(task: asyncio.Future[Any]) -> None:
    """A call its client gave up on has finished: say so if it failed unexpectedly."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, (Refused, grpc.aio.AbortError)):
        log.warning("a call finished after its client gave up: %r", exc)
