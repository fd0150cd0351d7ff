"""A waiting list's offer, opened from the link in its email (Québec FAQ 6).

``POST /api/v1/events/{event_id}/offers/claim`` with ``{"token": ...}`` (the secret of the
link, which the page reads from its fragment, never sent in a URL): the cart service puts
the offered seat in a cart of the family's own, and the gateway answers an admission
for that cart's session, as the waiting room would, so the registration page opens on
it. The session holds no slot of the waiting room (arrival 0): the seat was already the
family's. The token names the family: the session registers that family only.
"""

from __future__ import annotations

import math

from aiohttp import web
from pydantic import Field

from gateway.cart_calls import call_cart
from gateway.public import EVENT_PATH, event_view
from gateway.registration import Body, body_of
from gateway.replies import ApiError, json_errors, reply
from gateway.state import GATEWAY
from waitroom.pb.cart.v1 import cart_pb2 as pb
from waitroom.rpc import bearer_metadata

CLAIM_PATH = EVENT_PATH + "/offers/claim"


class ClaimBody(Body):
    token: str = Field(min_length=16, max_length=100)


@json_errors
async def claim_offer(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    view = await event_view(gw, request.match_info["event_id"])
    body = await body_of(request, ClaimBody)
    if gw.settings.service_token is None:
        raise ApiError(503, "unavailable", reason="no_service_token")
    claimed = await call_cart(
        gw,
        "ClaimOffer",
        pb.ClaimOfferRequest(event_id=view.event_id, token=body.token),
        bearer_metadata(gw.settings.service_token.get_secret_value()),
    )
    now_ms = gw.store.clock.now_ms()
    expires_ms = now_ms + view.config.session_ttl_ms
    token = gw.signer.sign(
        view.event_id,
        claimed.ticket_id,
        0,  # no waiting-room slot: the seat was the family's already
        now_ms // 1000,
        math.ceil(expires_ms / 1000),
        family=claimed.client_number,
    )
    return reply(
        {
            "admission": {
                "token": token,
                "expires_at": view.config.iso(expires_ms),
                "redirect": f"/register/{view.event_id}/",
            },
            "activity_id": claimed.activity_id,
            "participant": claimed.participant,
            "client_number": claimed.client_number,
            "offer_expires_at": claimed.expires_at,
        },
        headers={"Cache-Control": "private, no-store"},
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(CLAIM_PATH, claim_offer)
