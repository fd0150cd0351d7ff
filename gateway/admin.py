"""The operator API under /admin/v1: create, change live, pause, resume, stats."""

from __future__ import annotations

import functools
import hmac
import json
from typing import Any

from aiohttp import web

from gateway.replies import Handler, bearer_token, error, json_errors, reply
from gateway.state import GATEWAY, Gateway
from waitroom import events, keys
from waitroom.events import InvalidEvent, UnknownEvent
from waitroom.view import EventView

routes = web.RouteTableDef()
ADMIN_PREFIX = "/admin/v1"


def _refusal(request: web.Request) -> web.Response | None:
    """401 without a bearer token, 403 with a wrong one, None when the token is right."""
    expected = request.app[GATEWAY].settings.admin_token
    token = bearer_token(request)
    if token is None:
        return error(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    if expected is None or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        return error(403, "forbidden")
    return None


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidEvent("body is not JSON") from None


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
            return await handler(request)
        except UnknownEvent:
            return error(404, "unknown_event")
        except InvalidEvent as exc:
            return error(422, "invalid_event", detail=exc.detail)

    return wrapped


@routes.put(ADMIN_PREFIX + "/events/{event_id}")
@_guarded
async def put_event(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    event_id = request.match_info["event_id"]
    spec = events.parse_spec(await _body(request))
    created = await events.put_event(gw.redis, event_id, spec)
    return reply(await _refreshed(gw, event_id), status=201 if created else 200)


@routes.patch(ADMIN_PREFIX + "/events/{event_id}")
@_guarded
async def patch_event(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    event_id = request.match_info["event_id"]
    patch = events.parse_patch(await _body(request))
    await events.patch_event(gw.redis, event_id, patch)
    return reply(await _refreshed(gw, event_id))


def _set_paused(paused: bool) -> Handler:
    """The pause (True) or resume (False) handler."""

    @_guarded
    async def handler(request: web.Request) -> web.StreamResponse:
        gw = request.app[GATEWAY]
        event_id = request.match_info["event_id"]
        await events.set_paused(gw.redis, event_id, paused)
        return reply(await _refreshed(gw, event_id))

    return handler


routes.post(ADMIN_PREFIX + "/events/{event_id}/pause")(_set_paused(True))
routes.post(ADMIN_PREFIX + "/events/{event_id}/resume")(_set_paused(False))


@routes.get(ADMIN_PREFIX + "/events/{event_id}/stats")
@_guarded
async def stats(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    event_id = request.match_info["event_id"]
    view = await _fresh_view(gw, event_id)
    return reply(events.event_stats(view, gw.store.clock.now_ms()).as_json())
