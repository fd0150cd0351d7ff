"""Calls from the gateway to the cart service: a deadline on each, and the service's
refusals answered as JSON errors with their code, status and field."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from gateway.replies import ApiError
from gateway.state import Gateway
from waitroom.rpc import refusal_of

log = logging.getLogger(__name__)
STATUS_OF_KIND = {
    "invalid": 422,
    "not_found": 404,
    "conflict": 409,
    "unauthenticated": 401,
    "unavailable": 503,
}


def as_json(message: Message) -> dict[str, Any]:
    """A reply message as JSON, field names as in the .proto, defaults included."""
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


ALLOCATION_DEADLINE_S = 120.0


async def call_cart(gw: Gateway, method: str, request: Message, metadata: Any) -> Any:
    """One call to the cart service; its refusals become JSON errors with their code."""
    if gw.cart is None:
        raise ApiError(503, "unavailable", reason="no_cart_service")
    timeout = gw.settings.grpc_deadline_s
    if method == "Checkout":  # the provider's time (and a wait for a slot) on top
        timeout += gw.settings.provider_timeout_s * 2 + gw.settings.grpc_deadline_s
    elif method in ("Allocate", "ImportCsv", "ExportCsv"):  # a whole event's data at once
        timeout = max(timeout, ALLOCATION_DEADLINE_S)
    try:
        return await getattr(gw.cart, method)(request, timeout=timeout, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        refusal = refusal_of(exc)
        if refusal is None:
            log.warning("cart service %s failed: %s", method, exc.code().name)
            raise ApiError(503, "unavailable", reason="cart_service") from None
        extra: dict[str, object] = dict(refusal.extra)
        if refusal.field:
            extra["field"] = refusal.field
        raise ApiError(STATUS_OF_KIND.get(refusal.kind, 409), refusal.code, **extra) from None
