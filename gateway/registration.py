"""The registration API behind the door: ``/api/v1/events/{event_id}/cart...``.

Each call carries the admission token (``Authorization: Bearer``), checked here offline
(signature, event, session not ended) and again by the cart service, which the gateway
calls over gRPC with a deadline. Bodies are validated here (pydantic) so bad input is a
422 naming the field before any service is asked; the services' refusals come back with
their code and field (``waitroom.rpc``) and are answered as JSON with the same code.
Documented in ``docs/openapi/registration.yaml``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import browse
from gateway.cart_calls import as_json, call_cart
from gateway.public import EVENT_PATH, end_cart, event_view
from gateway.replies import ApiError, bearer_token, json_errors, reply
from gateway.state import GATEWAY, Gateway
from waitroom import ticket_ids
from waitroom.keys import EventKeys
from waitroom.pb.cart.v1 import cart_pb2 as pb
from waitroom.rpc import bearer_metadata
from waitroom.tickets import LeaveOutcome, leave
from waitroom.tokens import Admission, InvalidAdmission

log = logging.getLogger(__name__)
PRIVATE = {"Cache-Control": "private, no-store"}
CART_PATH = EVENT_PATH + "/cart"
RECEIPT_LOOKUP_PATH = "/api/v1/receipts/lookup"
M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=200)


class IdentifyBody(Body):
    client_number: str = Field(max_length=32)
    phone: str = Field(max_length=40)


class MemberBody(Body):
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    birth_date: str = Field(max_length=10)
    relationship: Literal["responsible", "spouse", "parent", "other", "child"]
    class_level: int | None = Field(None, ge=0, le=12)


class ItemsBody(Body):
    participant: str = Field(max_length=32)
    activity_ids: list[str] = Field(min_length=1, max_length=20)


class ParticipantBody(Body):
    participant: str = Field(max_length=32)


class WaitingListBody(Body):
    activity_id: str = Field(max_length=64)
    participant: str = Field(max_length=32)


class PayerBody(Body):
    member: str = Field(max_length=32)
    client_number: str = Field(max_length=32)
    phone: str = Field(max_length=40)
    email: str = Field(max_length=254)


class ConditionsBody(Body):
    accepted: bool


class CardBody(Body):
    number: str = Field(max_length=40)
    expiry: str = Field(max_length=10)
    cvv: str = Field(max_length=4)

    def __repr__(self) -> str:  # never log a card
        return "CardBody(***)"


class CheckoutBody(Body):
    # One of the two (neither when the event defers payment): the one-time token of the
    # provider's hosted card fields (what the page sends: the card never reaches us), or
    # the card itself (only with WAITROOM_ACCEPT_CARD_NUMBERS: the sandbox's load drills).
    card_token: str | None = Field(None, min_length=1, max_length=100)
    card: CardBody | None = None


class ReceiptLookupBody(Body):
    cart_number: str = Field(max_length=16)
    owner_number: str = Field(max_length=16)


async def body_of(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``: 400 ``invalid_json``, 422 naming the field."""
    raw = await request.read()
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", detail="expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid", field=field, detail=first["msg"]) from None


async def _admitted(request: web.Request) -> tuple[Gateway, Admission, tuple[tuple[str, str], ...]]:
    """The admission this request carries: 401 when missing, forged, expired, for another
    event, or when the session has ended (left, paid, or expired in the waiting room)."""
    gw = request.app[GATEWAY]
    view = await event_view(gw, request.match_info["event_id"])
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "missing_token")
    try:
        admission = gw.verifier.verify(token, view.event_id)
    except InvalidAdmission:
        raise ApiError(401, "invalid_token") from None
    if admission.arrival in view.ended or admission.arrival in view.left:
        raise ApiError(401, "session_ended")
    return gw, admission, bearer_metadata(token)


@json_errors
async def catalogue(request: web.Request) -> web.Response:
    """With an admission token: the catalogue with exact places (a parent's own answer,
    never cached). Without one: the public catalogue (``gateway/browse.py``)."""
    if "Authorization" not in request.headers:
        return await browse.catalogue(request, request.app[GATEWAY])
    gw, admission, meta = await _admitted(request)
    query = request.query
    kind = query.get("kind", "")
    if kind not in ("", "day_camp", "course"):
        raise ApiError(422, "invalid", field="kind")
    found = await call_cart(
        gw,
        "SearchCatalogue",
        pb.SearchRequest(
            event_id=admission.event_id,
            parks=query.getall("park", []),
            age_groups=query.getall("age_group", []),
            kind=kind,
            facets_only=query.get("facets") == "only",
        ),
        meta,
    )
    return reply(as_json(found), headers=PRIVATE)


@json_errors
async def get_cart(request: web.Request) -> web.Response:
    """The session's cart. A cart found paid (settled in the background: the provider's
    answer came late, or the replica that took the checkout died) ends the session, as
    a paid checkout does: its slot goes to the next parent."""
    gw, admission, meta = await _admitted(request)
    cart = await call_cart(gw, "GetCart", pb.GetCartRequest(), meta)
    if cart.status in ("paid", "confirmed", "ordered", "allocated"):
        await _end_session(gw, admission)
    return reply(as_json(cart))


@json_errors
async def identify(request: web.Request) -> web.Response:
    """Identify the family. In an event with phases, a family for which no phase is open
    is not kept in: it is told when its phase opens (409 ``not_your_phase`` with that
    moment, or ``no_phase_left``) and its session ends, its slot going to the next."""
    gw, admission, meta = await _admitted(request)
    body = await body_of(request, IdentifyBody)
    message = pb.IdentifyFamilyRequest(client_number=body.client_number, phone=body.phone)
    cart = await call_cart(gw, "IdentifyFamily", message, meta)
    if cart.outside_phases:
        await _end_session(gw, admission)
        await end_cart(gw, admission.event_id, admission.ticket_id)
        if cart.phase_opens_at:
            raise ApiError(409, "not_your_phase", field="client_number", detail=cart.phase_opens_at)
        raise ApiError(409, "no_phase_left", field="client_number")
    return reply(as_json(cart))


@json_errors
async def add_member(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    body = await body_of(request, MemberBody)
    message = pb.AddFamilyMemberRequest(
        first_name=body.first_name,
        last_name=body.last_name,
        birth_date=body.birth_date,
        relationship=body.relationship,
        class_level=-1 if body.class_level is None else body.class_level,
    )
    return reply(as_json(await call_cart(gw, "AddFamilyMember", message, meta)), status=201)


@json_errors
async def add_items(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    body = await body_of(request, ItemsBody)
    message = pb.AddItemsRequest(participant=body.participant, activity_ids=body.activity_ids)
    return reply(as_json(await call_cart(gw, "AddItems", message, meta)))


@json_errors
async def duplicate(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    body = await body_of(request, ParticipantBody)
    message = pb.DuplicateParticipantRequest(participant=body.participant)
    return reply(as_json(await call_cart(gw, "DuplicateParticipant", message, meta)))


@json_errors
async def remove_item(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    message = pb.RemoveItemRequest(
        activity_id=request.match_info["activity_id"],
        participant=request.match_info["participant"],
    )
    return reply(as_json(await call_cart(gw, "RemoveItem", message, meta)))


@json_errors
async def extend(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    return reply(as_json(await call_cart(gw, "ExtendHold", pb.ExtendHoldRequest(), meta)))


@json_errors
async def waiting_list(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    body = await body_of(request, WaitingListBody)
    message = pb.JoinWaitingListRequest(activity_id=body.activity_id, participant=body.participant)
    return reply(as_json(await call_cart(gw, "JoinWaitingList", message, meta)), status=201)


@json_errors
async def set_payer(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    body = await body_of(request, PayerBody)
    message = pb.SetPayerRequest(
        member=body.member, client_number=body.client_number, phone=body.phone, email=body.email
    )
    return reply(as_json(await call_cart(gw, "SetPayer", message, meta)))


@json_errors
async def conditions(request: web.Request) -> web.Response:
    gw, _, meta = await _admitted(request)
    body = await body_of(request, ConditionsBody)
    message = pb.AcceptConditionsRequest(accepted=body.accepted)
    return reply(as_json(await call_cart(gw, "AcceptConditions", message, meta)))


@json_errors
async def checkout(request: web.Request) -> web.Response:
    """Pay (or confirm, when the event defers payment; or order, "En attente", when the
    event takes requests). The ``Idempotency-Key`` header is required: the page makes
    one per payment attempt, so a double click charges once. Once paid, confirmed or
    ordered, the admitted session ends and its slot goes to the next."""
    gw, admission, meta = await _admitted(request)
    key = request.headers.get("Idempotency-Key", "").strip()
    if not 8 <= len(key) <= 100:
        raise ApiError(400, "idempotency_key_required", field="Idempotency-Key")
    body = await body_of(request, CheckoutBody)
    if body.card is not None and body.card_token is not None:
        raise ApiError(422, "invalid", field="card_token", detail="card or card_token, not both")
    if body.card is not None and not gw.settings.accept_card_numbers:
        raise ApiError(422, "card_numbers_not_accepted", field="card")
    card = body.card or CardBody(number="", expiry="", cvv="")
    message = pb.CheckoutRequest(
        idempotency_key=key,
        card_number=card.number,
        card_expiry=card.expiry,
        card_cvv=card.cvv,
        card_token=body.card_token or "",
    )
    result = await call_cart(gw, "Checkout", message, meta)
    if result.outcome in ("paid", "confirmed", "ordered"):
        await _end_session(gw, admission)
    status = 202 if result.outcome == "pending" else 200
    return reply(as_json(result), status=status)


END_RETRY_FOR_S = 120.0  # a Redis Cluster fails over in 2-3 s; an outage may last longer


async def _end_session(gw: Gateway, admission: Admission) -> None:
    """Free the session's slot in the waiting room: the next parent comes in. When Redis
    cannot be written (a failover, an outage), the registration stands and the end is
    tried again in the background for a while: a paid session must not hold its slot
    until its expiry (the page that reads a paid cart ends it too)."""
    if await _try_end(gw, admission):
        return
    task = asyncio.create_task(_end_later(gw, admission), name=f"end-{admission.arrival}")
    gw.background.add(task)
    task.add_done_callback(gw.background.discard)


async def _try_end(gw: Gateway, admission: Admission) -> bool:
    if admission.arrival == 0:  # a waiting list's offer: no slot of the waiting room
        return True
    try:
        outcome = await leave(gw.scripts, admission.event_id, admission.arrival)
    except Exception as exc:  # any failure: tried again
        log.warning("session %s not ended after checkout: %s", admission.arrival, exc)
        return False
    view = gw.store.views.get(admission.event_id)
    if view is not None and outcome is LeaveOutcome.SESSION_ENDED:
        view.apply_log([f"E {admission.arrival}"], local=True)
    return True


async def _end_later(gw: Gateway, admission: Admission) -> None:
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + END_RETRY_FOR_S, 0.5
    while loop.time() < deadline:
        await asyncio.sleep(delay)
        delay = min(5.0, delay * 2)
        if await _try_end(gw, admission):
            log.info("session %s ended after checkout, on a later try", admission.arrival)
            return
    log.error(
        "session %s not ended after checkout: its slot frees at its expiry", admission.arrival
    )


@json_errors
async def receipt_lookup(request: web.Request) -> web.Response:
    """Reprint a receipt from the cart number and the owner number (Québec FAQ 14). No
    admission needed: the two numbers printed on the receipt are the proof."""
    gw = request.app[GATEWAY]
    body = await body_of(request, ReceiptLookupBody)
    message = pb.GetReceiptRequest(cart_number=body.cart_number, owner_number=body.owner_number)
    return reply(as_json(await call_cart(gw, "GetReceipt", message, ())))


# One chance per family (docs/draw.md): a pre-queue ticket names its family before the
# draw; the first ticket of a family keeps the family's one entry in the lottery.
FAMILY_PATH = EVENT_PATH + "/tickets/{ticket_id}/family"
FAMILY_ATTEMPTS = 5  # credential checks per ticket: no oracle for phone numbers
_CLAIM = {
    1: (200, ""),
    2: (409, "family_already_in_draw"),
    3: (409, "draw_done"),
    4: (409, "ticket_has_another_family"),
    6: (409, "not_one_per_family"),
}


@json_errors
async def claim_family(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    view = await event_view(gw, request.match_info["event_id"])
    try:
        arrival = gw.verify_ticket(view, request.match_info["ticket_id"])
    except ticket_ids.BadTicketId:
        raise ApiError(400, "bad_ticket_id") from None
    if arrival is None:
        raise ApiError(404, "unknown_ticket")
    if not view.config.one_per_family:
        raise ApiError(409, "not_one_per_family")
    if view.drawn or gw.store.clock.now_ms() >= view.config.opens_ms:
        raise ApiError(409, "draw_done")  # entries close at opens_at
    body = await body_of(request, IdentifyBody)
    k = EventKeys(view.event_id)
    if await gw.redis.hincrby(k.fa, str(arrival), 1) > FAMILY_ATTEMPTS:
        raise ApiError(429, "too_many_attempts")
    if gw.settings.service_token is None:
        raise ApiError(503, "unavailable", reason="no_service_token")
    credential = bearer_metadata(gw.settings.service_token.get_secret_value())
    checked = await call_cart(
        gw,
        "VerifyFamily",
        pb.IdentifyFamilyRequest(client_number=body.client_number, phone=body.phone),
        credential,
    )
    number = checked.client_number
    family_key = hmac.new(gw.family_key, f"{view.event_id}|{number}".encode(), "sha256")
    code, holder = await gw.scripts.family(
        keys=[k.cfg, k.draw, k.fam, k.tfam],
        args=[arrival, family_key.hexdigest(), number],
    )
    status, refusal = _CLAIM.get(int(code), (200, ""))
    if int(code) == 2:  # the family's entry is its other ticket (another tab, a device)
        raise ApiError(status, refusal, holder_arrival=int(holder))
    if refusal:
        raise ApiError(status, refusal)
    return reply({"client_number": number, "in_draw": True, "arrival": arrival})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(EVENT_PATH + "/catalogue", catalogue)
    router.add_get(CART_PATH, get_cart)
    router.add_post(CART_PATH + "/family", identify)
    router.add_post(CART_PATH + "/members", add_member)
    router.add_post(CART_PATH + "/items", add_items)
    router.add_delete(CART_PATH + "/items/{activity_id}/{participant}", remove_item)
    router.add_post(CART_PATH + "/duplicate", duplicate)
    router.add_post(CART_PATH + "/extension", extend)
    router.add_post(CART_PATH + "/waiting-list", waiting_list)
    router.add_put(CART_PATH + "/payer", set_payer)
    router.add_put(CART_PATH + "/conditions", conditions)
    router.add_post(CART_PATH + "/checkout", checkout)
    router.add_post(RECEIPT_LOOKUP_PATH, receipt_lookup)
    router.add_post(FAMILY_PATH, claim_family)
