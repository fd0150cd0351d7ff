"""The catalogue before the night: ``GET /api/v1/events/{event}/catalogue`` without a token.

From the date the event sets (``browsing_opens_at``; unset: as soon as the event exists)
anyone may read the activities, their dates, prices and ages, with the places as a level
("available", "few", "full"), never a count. Answers carry ``Cache-Control: public`` so
a CDN in front of the gateways takes the load of a city planning its summer; each
gateway also keeps each answer for a few seconds and asks the cart service once per
query, however many parents ask at the same moment. Holding a seat still needs an
admission token: every ``/cart`` call answers 401 without one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson
from aiohttp import web
from google.protobuf.json_format import MessageToDict

from gateway.cart_calls import call_cart
from gateway.public import event_view
from gateway.replies import ApiError
from gateway.state import Gateway
from waitroom.pb.cart.v1 import cart_pb2 as pb

# How long a CDN (max-age) and each gateway (the local copy) keep an answer.
MAX_AGE_S = 30
LOCAL_S = 5.0
LOCAL_ENTRIES = 512  # queries kept per gateway process (then the copies are dropped)
MAX_FILTERS = 40  # parks or age groups in one query
HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Cache-Control": f"public, max-age={MAX_AGE_S}, stale-while-revalidate={MAX_AGE_S}",
    # An answer with a token is a parent's own (exact places): never the shared copy.
    "Vary": "Authorization",
}
Query = tuple[str, tuple[str, ...], tuple[str, ...], str, bool]


def _filters(request: web.Request, name: str) -> tuple[str, ...]:
    values = request.query.getall(name, [])
    if len(values) > MAX_FILTERS or any(len(value) > 100 for value in values):
        raise ApiError(422, "invalid", field=name, detail="too many or too long")
    return tuple(sorted(set(values)))


async def catalogue(request: web.Request, gw: Gateway) -> web.Response:
    """The catalogue for anyone: 403 ``not_yet_browsable`` before the event's date."""
    view = await event_view(gw, request.match_info["event_id"])
    config = view.config
    if not config.browsable(gw.store.clock.now_ms()):
        raise ApiError(403, "not_yet_browsable", browsing_opens_at=config.iso(config.browse_ms))
    kind = request.query.get("kind", "")
    if kind not in ("", "day_camp", "course"):
        raise ApiError(422, "invalid", field="kind")
    query: Query = (
        view.event_id,
        _filters(request, "park"),
        _filters(request, "age_group"),
        kind,
        request.query.get("facets") == "only",
    )
    body = await _shared(gw, query)
    return web.Response(body=body, headers=HEADERS)


async def _shared(gw: Gateway, query: Query) -> bytes:
    """The answer to ``query``: this process's copy while fresh, else one call to the cart
    service that every request for the same query waits on."""
    now = time.monotonic()
    copies = gw.browse_copies
    held = copies.get(query)
    if held is not None and held[0] > now:
        return await asyncio.shield(held[1])
    if len(copies) >= LOCAL_ENTRIES:
        copies.clear()
    answer = asyncio.ensure_future(_ask(gw, query))
    copies[query] = (now + LOCAL_S, answer)
    try:
        return await asyncio.shield(answer)
    except BaseException:
        if copies.get(query, (0.0, None))[1] is answer:
            del copies[query]  # a failure is not kept: the next request asks again
        raise


async def _ask(gw: Gateway, query: Query) -> bytes:
    event_id, parks, age_groups, kind, facets_only = query
    found = await call_cart(
        gw,
        "BrowseCatalogue",
        pb.SearchRequest(
            event_id=event_id,
            parks=parks,
            age_groups=age_groups,
            kind=kind,
            facets_only=facets_only,
        ),
        (),
    )
    return orjson.dumps(_public(found))


def _public(found: pb.SearchReply) -> dict[str, object]:
    body = MessageToDict(
        found, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    activities: Sequence[dict[str, object]] = body.get("activities", [])
    for activity in activities:  # the counts are not for anyone: only the level
        for name in ("capacity", "places_left", "waiting_list"):
            activity.pop(name, None)
    return body
