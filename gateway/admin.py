"""The operator API under /admin/v1: create, change live, pause, resume, stats."""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import re
from typing import Any

from aiohttp import web

from gateway import staff
from gateway.cart_calls import call_cart
from gateway.replies import ApiError, Handler, bearer_token, error, json_errors, reply
from gateway.state import Gateway, gateway_of
from waitroom import events, keys
from waitroom.events import InvalidEvent, UnknownEvent
from waitroom.pb.cart.v1 import cart_pb2
from waitroom.rpc import bearer_metadata
from waitroom.view import EventView

routes = web.RouteTableDef()
ADMIN_PREFIX = "/admin/v1"
audit = logging.getLogger("waitroom.operator")
# Who acts: the operator names themself in this header (the token is shared by the
# operators of a night); anything but a short plain name is logged as "unnamed".
OPERATOR_HEADER = "X-Operator"
_OPERATOR_NAME = re.compile(r"[\w.@+ -]{1,64}")


def _who(request: web.Request) -> str:
    name = request.headers.get(OPERATOR_HEADER, "").strip()
    who = name if _OPERATOR_NAME.fullmatch(name) else "unnamed"
    return f"{who} from {request.remote}"


def _refusal(request: web.Request) -> web.Response | None:
    """401 without a bearer token, 403 with a wrong one, None when the token is right."""
    expected = gateway_of(request).settings.admin_token
    token = bearer_token(request)
    if token is None:
        return error(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    if expected is None or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        return error(403, "forbidden")
    return None


# The fields a change named, for the audit line.
CHANGED = web.RequestKey("operator_fields", list[str])


async def _body(request: web.Request) -> Any:
    try:
        body = await request.json()
    except ValueError:  # not JSON, not UTF-8, or a number past Python's 4 300 digits
        raise InvalidEvent("body is not JSON") from None
    if isinstance(body, dict):
        request[CHANGED] = [str(key)[:40] for key in list(body)[:20]]
    return body


async def _fresh_view(gw: Gateway, event_id: str) -> EventView:
    """The event's view read from Redis now: operators see their change at once."""
    if not keys.EVENT_ID_RE.match(event_id):
        raise UnknownEvent(event_id)
    view = await gw.store.refresh_event(event_id)
    if view is None:
        raise UnknownEvent(event_id)
    return view


async def _refreshed(gw: Gateway, event_id: str) -> dict[str, object]:
    view = await _fresh_view(gw, event_id)
    now_ms = gw.store.clock.now_ms()
    return {**events.public_event(view, now_ms), "config": view.config.public_schedule()}


def _guarded(handler: Handler) -> Handler:
    """Admin token first; then unknown events are 404 and refused input 422, in JSON.

    A decorator rather than a middleware: any middleware (or sub-application with one)
    would run on every public poll too.
    """

    @json_errors
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        refusal = _refusal(request)
        if refusal is not None:
            return refusal
        try:
            answer = await handler(request)
        except UnknownEvent:
            answer = error(404, "unknown_event")
        except InvalidEvent as exc:
            answer = error(422, "invalid_event", detail=exc.detail)
        if request.method != "GET":  # every change, refused ones too: who, what, result
            fields = sorted(request.get(CHANGED, ()))
            audit.info(
                "operator %s: %s %s %s -> %d",
                _who(request), request.method, request.path, ",".join(fields) or "-",
                answer.status,
            )  # fmt: skip
            with contextlib.suppress(Exception):  # the console's log: best effort
                await staff.record(
                    gateway_of(request).redis, f"API: {_who(request)}",
                    f"{request.method} {request.path}", ",".join(fields), str(answer.status),
                )  # fmt: skip
        return answer

    return wrapped


@routes.put(ADMIN_PREFIX + "/events/{event_id}")
@_guarded
async def put_event(request: web.Request) -> web.StreamResponse:
    gw = gateway_of(request)
    event_id = request.match_info["event_id"]
    spec = events.parse_spec(await _body(request))
    created = await events.put_event(gw.redis, event_id, spec)
    return reply(await _refreshed(gw, event_id), status=201 if created else 200)


@routes.patch(ADMIN_PREFIX + "/events/{event_id}")
@_guarded
async def patch_event(request: web.Request) -> web.StreamResponse:
    gw = gateway_of(request)
    event_id = request.match_info["event_id"]
    patch = events.parse_patch(await _body(request))
    await events.patch_event(gw.redis, event_id, patch)
    return reply(await _refreshed(gw, event_id))


def _set_paused(paused: bool) -> Handler:
    """The pause (True) or resume (False) handler."""

    @_guarded
    async def handler(request: web.Request) -> web.StreamResponse:
        gw = gateway_of(request)
        event_id = request.match_info["event_id"]
        await events.set_paused(gw.redis, event_id, paused)
        return reply(await _refreshed(gw, event_id))

    return handler


routes.post(ADMIN_PREFIX + "/events/{event_id}/pause")(_set_paused(True))
routes.post(ADMIN_PREFIX + "/events/{event_id}/resume")(_set_paused(False))


@routes.get(ADMIN_PREFIX + "/events/{event_id}/stats")
@_guarded
async def stats(request: web.Request) -> web.StreamResponse:
    gw = gateway_of(request)
    event_id = request.match_info["event_id"]
    view = await _fresh_view(gw, event_id)
    return reply(events.event_stats(view, gw.store.clock.now_ms()).as_json())


@routes.post(ADMIN_PREFIX + "/events/{event_id}/allocation")
@_guarded
async def allocate(request: web.Request) -> web.StreamResponse:
    """Run a "requests" event's allocation: every pending booking reserved or cancelled
    with its reason, each family emailed. Again: decides only what was ordered since.
    409 ``not_a_requests_event`` for an event sold first come, first served."""
    gw = gateway_of(request)
    return reply(await run_allocation(gw, request.match_info["event_id"], _who(request)))


async def run_allocation(gw: Gateway, event_id: str, who: str) -> dict[str, Any]:
    """The cart service's allocation of ``event_id`` (the API's and the console's)."""
    done = await call_cart(
        gw,
        "Allocate",
        cart_pb2.AllocateRequest(event_id=event_id, run_by=who),
        _service_credential(gw),
    )
    return {
        "reserved": done.reserved,
        "cancelled": dict(sorted(done.cancelled.items())),
        "orders": done.orders,
    }


@routes.post(ADMIN_PREFIX + "/events/{event_id}/registrations/{registration_id}/cancel")
@_guarded
async def cancel_registration(request: web.Request) -> web.StreamResponse:
    """Cancel a registration (its id as exported): the seat frees, the payment for it is
    refunded once, the family is emailed. Again: the same answer. Body: {"reason": ...}."""
    gw = gateway_of(request)
    event_id = request.match_info["event_id"]
    raw = request.match_info["registration_id"]
    if not raw.isascii() or not raw.isdigit() or not 0 < len(raw) <= 12:
        raise ApiError(404, "unknown_registration")
    body = await _body(request) if request.can_read_body else {}
    reason = body.get("reason", "") if isinstance(body, dict) else None
    if not isinstance(reason, str) or len(reason) > 500:
        raise ApiError(422, "invalid", field="reason", detail="a text of 500 characters at most")
    return reply(await run_cancellation(gw, event_id, int(raw), reason.strip(), _who(request)))


async def run_cancellation(
    gw: Gateway, event_id: str, registration_id: int, reason: str, who: str
) -> dict[str, Any]:
    """The cart service's cancellation of a registration (the API's and the console's)."""
    done = await call_cart(
        gw,
        "CancelRegistration",
        cart_pb2.CancelRegistrationRequest(
            event_id=event_id, registration_id=registration_id, reason=reason, cancelled_by=who
        ),
        _service_credential(gw),
    )
    return {
        "registration_id": done.registration_id,
        "activity_id": done.activity_id,
        "participant": done.participant,
        "amount_cents": done.amount_cents,
        "refund": done.refund_status or None,
    }


async def staff_lookup(gw: Gateway, event_id: str, kind: str, key: str) -> list[Any]:
    """The cart service's tables for the console: a family, a cart, an activity."""
    found = await call_cart(
        gw,
        "StaffLookup",
        cart_pb2.StaffLookupRequest(event_id=event_id, kind=kind, key=key),
        _service_credential(gw),
    )
    return list(found.tables)


async def csv_export(gw: Gateway, event_id: str, kind: str) -> str:
    """An export of the ledger as CSV text (the console's download)."""
    found = await call_cart(
        gw,
        "ExportCsv",
        cart_pb2.ExportCsvRequest(event_id=event_id, kind=kind),
        _service_credential(gw),
    )
    return str(found.text)


async def csv_import(gw: Gateway, event_id: str, kind: str, text: str, title: str) -> Any:
    """A CSV import into the ledger and its report (the console's upload)."""
    return await call_cart(
        gw,
        "ImportCsv",
        cart_pb2.ImportCsvRequest(event_id=event_id, kind=kind, text=text, title=title),
        _service_credential(gw),
    )


def _service_credential(gw: Gateway) -> tuple[tuple[str, str], ...]:
    token = gw.settings.service_token
    if gw.cart is None or token is None:
        raise ApiError(503, "unavailable", detail="no cart service configured")
    return bearer_metadata(token.get_secret_value())
