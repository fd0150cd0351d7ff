"""The public API: event status, join, poll (the heartbeat), leave."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import hdrs, web

from gateway import observe, proof
from gateway.cart_calls import call_cart
from gateway.replies import ApiError, bearer_token, error, json_errors, reply, unavailable
from gateway.state import GATEWAY, Gateway
from waitroom import ticket_ids
from waitroom.events import public_event
from waitroom.keys import EVENT_ID_RE, EventKeys
from waitroom.pb.cart.v1 import cart_pb2
from waitroom.rpc import bearer_metadata
from waitroom.schedule import EventState
from waitroom.settings import Settings
from waitroom.tickets import JoinCode, JoinResult, LeaveOutcome, leave, requeue
from waitroom.tokens import InvalidAdmission
from waitroom.view import EventView, Resolution, TicketStatus

COOKIE_PREFIX = "wr_"
SOON_POLL_MS = 2000
DRAW_SETTLE_MS = 500
DRAW_SPREAD_MS = 3000
MIN_POLL_MS = 1000

log = logging.getLogger(__name__)
EVENT_PATH = "/api/v1/events/{event_id}"
TICKET_PATH = EVENT_PATH + "/tickets/{ticket_id}"


def cookie_name(event_id: str) -> str:
    return COOKIE_PREFIX + event_id


def ticket_cookie(event_id: str, ticket_id: str, max_age_s: int, secure: bool = False) -> str:
    """The ``Set-Cookie`` value that ties a browser to its ticket.

    Written out rather than through ``http.cookies``, which costs several microseconds a
    join: both name (an event id) and value (a base64url ticket id) are cookie-safe by
    construction, so nothing needs quoting.
    """
    flags = "; Secure" if secure else ""
    return (
        f"{cookie_name(event_id)}={ticket_id}; HttpOnly; Max-Age={max_age_s}; Path=/;"
        f" SameSite=Lax{flags}"
    )


async def event_view(gw: Gateway, event_id: str) -> EventView:
    """The event's view; an event created a moment ago elsewhere is fetched once.

    Raises ApiError 404 ``unknown_event``.
    """
    view = gw.store.views.get(event_id)
    if view is None:
        if EVENT_ID_RE.match(event_id):
            view = await gw.store.refresh_event(event_id)
        if view is None:
            raise ApiError(404, "unknown_event")
    return view


def client_address(request: web.BaseRequest, settings: Settings) -> str:
    """The client's address, for the join limit.

    Behind a load balancer (``trust_forwarded_for``) it is in X-Forwarded-For, which each
    proxy extends on the right with the address it saw: walk it from the right, past the
    trusted proxies (``trusted_proxies``; none listed: loopback and private networks,
    where a load balancer in front of the gateways lives), and take the first address
    that is not one. Whatever lies further left was written by the client and is never
    believed. A peer that is not a trusted proxy is the client.
    (aiohttp-remotes does this as a middleware, which would run on every poll, and its
    filtered mode does not check the direct peer; ``ipaddress`` parses, this walks.)
    """
    peer = request.remote or "unknown"
    if not settings.trust_forwarded_for:
        return peer
    proxies = settings.trusted_proxies or PRIVATE_NETWORKS
    try:
        trusted = _within(ip_address(peer), proxies)
    except ValueError:  # not an IP address (a Unix socket): no proxy
        return peer
    client = peer
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        if not trusted:
            break
        try:
            address = ip_address(hop.strip())
        except ValueError:  # not written by a proxy: stop at the last address we trust
            break
        client, trusted = str(address), _within(address, proxies)
    return client


PRIVATE_NETWORKS: list[IPv4Network | IPv6Network] = [
    ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
]


def _within(
    address: IPv4Address | IPv6Address, networks: Sequence[IPv4Network | IPv6Network]
) -> bool:
    return any(address in network for network in networks)


def _poll_after_ms(gw: Gateway, view: EventView, arrival: int, res: Resolution, now_ms: int) -> int:
    wish = min(gw.settings.poll_after_ms, view.config.heartbeat_timeout_ms // 4)
    if res.status is TicketStatus.PREQUEUE:
        until_open = view.config.opens_ms - now_ms
        if 0 < until_open < wish:
            # Everyone in the pre-queue wants their place right after the draw: spread
            # those first polls over a few seconds instead of one thundering instant.
            wish = until_open + DRAW_SETTLE_MS + (arrival * 7919) % DRAW_SPREAD_MS
    elif res.eta_ms is not None and res.eta_ms < wish * 2:
        wish = min(wish, SOON_POLL_MS)
    return max(MIN_POLL_MS, wish)


def _admission(
    gw: Gateway, view: EventView, ticket_id: str, arrival: int, admitted_at_ms: int
) -> dict[str, object]:
    expires_ms = admitted_at_ms + view.config.session_ttl_ms
    cache_key = (view.event_id, arrival, admitted_at_ms)
    token = gw.tokens.get(cache_key)
    if token is None:
        if len(gw.tokens) > 100_000:
            gw.tokens.clear()
        token = gw.signer.sign(
            view.event_id,
            ticket_id,
            arrival,
            admitted_at_ms // 1000,
            math.ceil(expires_ms / 1000),
            family=view.families.get(arrival, ""),
        )
        gw.tokens[cache_key] = token
    return {
        "token": token,
        "expires_at": view.config.iso(expires_ms),
        "redirect": f"/register/{view.event_id}/",
    }


def ticket_body(
    gw: Gateway, view: EventView, ticket_id: str, arrival: int, res: Resolution, now_ms: int
) -> dict[str, object]:
    """The contract's ticket object."""
    eta_s = None if res.eta_ms is None else math.ceil(res.eta_ms / 1000)
    admission = None
    if res.status is TicketStatus.ADMITTED and res.admitted_at_ms is not None:
        admission = _admission(gw, view, ticket_id, arrival, res.admitted_at_ms)
        observe.eta_errors.admitted(view.event_id, arrival, res.admitted_at_ms)
    elif res.status is TicketStatus.WAITING and res.eta_ms is not None:
        observe.eta_errors.predicted(view.event_id, arrival, now_ms + res.eta_ms)
    return {
        "ticket_id": ticket_id,
        "event_id": view.event_id,
        "status": res.status,  # a StrEnum: orjson writes its value
        "position": res.position,
        "eta_seconds": eta_s,
        "eta_at": None if res.eta_ms is None else view.config.iso(now_ms + res.eta_ms),
        "poll_after_ms": _poll_after_ms(gw, view, arrival, res, now_ms),
        "requeued": res.requeued,
        "admission": admission,
        "arrival": arrival,
    }


async def _put_back(gw: Gateway, view: EventView, arrival: int, now_ms: int) -> Resolution:
    """A ticket whose turn came while it was silent polls again: back to the end of the line."""
    code, line = await requeue(gw.scripts, view.event_id, arrival)
    if code == 2:
        return Resolution(TicketStatus.CLOSED, requeued=True)
    if line > 0:
        view.apply_log([f"R {arrival} {line}"], local=True)
    return view.resolve(arrival, now_ms)


def _live_cookie_ticket(
    request: web.BaseRequest, gw: Gateway, view: EventView, now_ms: int
) -> tuple[str, int, Resolution] | None:
    if hdrs.COOKIE not in request.headers:  # a first join: nothing to parse
        return None
    ticket_id = request.cookies.get(cookie_name(view.event_id))
    if not ticket_id:
        return None
    try:
        arrival = gw.verify_ticket(view, ticket_id)
    except ticket_ids.BadTicketId:
        return None
    if arrival is None:
        return None
    res = view.resolve(arrival, now_ms)
    if res.status in (TicketStatus.DONE, TicketStatus.CLOSED):
        return None
    return ticket_id, arrival, res


@json_errors
async def get_event(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    view = await event_view(gw, request.match_info["event_id"])
    return reply(public_event(view, gw.store.clock.now_ms()))


@json_errors
async def join(request: web.Request) -> web.Response:
    return await join_ticket(request.app[GATEWAY], request.match_info["event_id"], request)


async def join_ticket(gw: Gateway, event_id: str, request: web.BaseRequest) -> web.Response:
    """Join (or rejoin with the browser's cookie); raises ApiError for refusals it names."""
    view = await event_view(gw, event_id)
    now_ms = gw.store.clock.now_ms()
    existing = _live_cookie_ticket(request, gw, view, now_ms)
    if existing is not None:
        ticket_id, arrival, res = existing
        if res.lost_priority:
            res = await _put_back(gw, view, arrival, now_ms)
        return _answer(gw, view, ticket_id, arrival, res, now_ms)
    state = view.state(now_ms)
    if state is EventState.SCHEDULED:
        return error(409, "not_open", waiting_room_opens_at=view.config.iso(view.config.wro_ms))
    if state is EventState.CLOSED:
        return error(409, "closed")
    if gw.store.age_s() > gw.settings.stale_after_s:
        return unavailable()
    shown = request.headers.get(proof.HEADER)
    if shown is not None and gw.settings.join_proof_bits:
        client = "pow:" + proof.verify(gw.proof_key, view.event_id, shown)
    else:
        client = client_address(request, gw.settings)
    result = await gw.joiner.join(view.event_id, client)
    if result.code is not JoinCode.ISSUED:
        return _join_refused(gw, view, result)
    return _ticket_issued(gw, view, result, now_ms)


def _join_refused(gw: Gateway, view: EventView, result: JoinResult) -> web.Response:
    """The answer to a join the script refused (raises ApiError for an unknown event)."""
    if result.code is JoinCode.NOT_OPEN:
        return error(409, "not_open", waiting_room_opens_at=view.config.iso(view.config.wro_ms))
    if result.code is JoinCode.CLOSED:
        return error(409, "closed")
    if result.code is JoinCode.UNKNOWN_EVENT:
        raise ApiError(404, "unknown_event")
    retry_s = max(1, math.ceil(result.retry_after_ms / 1000))  # RATE_LIMITED
    headers = {"Retry-After": str(retry_s)}
    bits = gw.settings.join_proof_bits
    if bits:  # the way past the limit at once: a proof of work (gateway/proof.py)
        headers[proof.CHALLENGE_HEADER] = proof.challenge(gw.proof_key, view.event_id, bits)
        headers[proof.BITS_HEADER] = str(bits)
    return error(429, "rate_limited", headers=headers)


def _ticket_issued(gw: Gateway, view: EventView, result: JoinResult, now_ms: int) -> web.Response:
    """201 with the new ticket and the cookie that ties the browser to it."""
    arrival = result.arrival
    ticket_id = ticket_ids.encode(gw.ticket_key(view), arrival)
    view.seq = max(view.seq, arrival)
    gw.remember(view, ticket_id, arrival)
    if result.admitted:
        res = Resolution(TicketStatus.ADMITTED, admitted_at_ms=result.now_ms)
    else:
        res = view.resolve(arrival, result.now_ms)
    body = ticket_body(gw, view, ticket_id, arrival, res, result.now_ms)
    max_age = max(60, (view.config.closes_ms + view.config.session_ttl_ms - now_ms) // 1000)
    observe.joins.inc(view.event_id)
    cookie = ticket_cookie(view.event_id, ticket_id, max_age, gw.settings.secure_cookies)
    return reply(body, status=201, headers={"Set-Cookie": cookie})


async def _ticket(request: web.Request) -> tuple[Gateway, EventView, str, int]:
    """The gateway, view, id and arrival number of a ticket URL; ApiError when not genuine."""
    gw = request.app[GATEWAY]
    ticket_id = request.match_info["ticket_id"]
    view = await event_view(gw, request.match_info["event_id"])
    try:
        checked = gw.verify_ticket(view, ticket_id)
    except ticket_ids.BadTicketId:
        raise ApiError(400, "bad_ticket_id") from None
    if checked is None:
        raise ApiError(404, "unknown_ticket")
    return gw, view, ticket_id, checked


def _stale(gw: Gateway, view: EventView, arrival: int, now_ms: int) -> web.Response | None:
    """503 when this process's view is too old to answer from; the parent is here even if
    Redis is not, so the poll still counts as a heartbeat (kept until Redis is back)."""
    if gw.store.age_s() <= gw.settings.stale_after_s:
        return None
    gw.heartbeats.beat(view.event_id, arrival, now_ms)
    return unavailable()


def _poll_known(
    gw: Gateway, view: EventView, ticket_id: str, arrival: int, seen: int | None
) -> web.Response | None:
    """A poll answered from memory alone; None when it needs Redis (the slow path)."""
    now_ms = gw.store.clock.now_ms()
    stale = _stale(gw, view, arrival, now_ms)
    if stale is not None:
        return stale
    if arrival > view.seq:
        return None
    waiting = view.in_line(arrival, now_ms, seen)
    if waiting is not None:
        return _answer_waiting(gw, view, ticket_id, arrival, waiting, now_ms)
    res = view.resolve_any(arrival, now_ms, seen)
    if res.lost_priority:
        return None
    return _answer(gw, view, ticket_id, arrival, res, now_ms)


def _answer_waiting(
    gw: Gateway, view: EventView, ticket_id: str, arrival: int, res: Resolution, now_ms: int
) -> web.Response:
    """``_answer`` for a ticket plainly waiting in line (``EventView.in_line``), the poll
    that is the load, in one function: the same heartbeat, count and ticket object, with
    none of the branches for the other states. With ``in_line``: 7.0 → 5.9 µs a poll
    outside the server; tests/test_fastpath.py checks both answers are the same."""
    config = view.config
    event_id = view.event_id
    gw.heartbeats.beat(event_id, arrival, now_ms, config.heartbeat_grace_ms)
    observe.polls.inc(event_id)
    eta_ms = res.eta_ms
    wish = min(gw.settings.poll_after_ms, config.heartbeat_timeout_ms // 4)
    if eta_ms is None:
        eta_s = eta_at = None
    else:
        eta_s = math.ceil(eta_ms / 1000)
        eta_at = config.iso(now_ms + eta_ms)
        observe.eta_errors.predicted(event_id, arrival, now_ms + eta_ms)
        if eta_ms < wish * 2:
            wish = min(wish, SOON_POLL_MS)
    body = {
        "ticket_id": ticket_id,
        "event_id": event_id,
        "status": TicketStatus.WAITING,
        "position": res.position,
        "eta_seconds": eta_s,
        "eta_at": eta_at,
        "poll_after_ms": max(MIN_POLL_MS, wish),
        "requeued": res.requeued,
        "admission": None,
        "arrival": arrival,
    }
    return reply(body)


def _answer(
    gw: Gateway, view: EventView, ticket_id: str, arrival: int, res: Resolution, now_ms: int
) -> web.Response:
    """The poll's answer; a ticket still in line was seen, so its heartbeat is recorded."""
    if res.status is TicketStatus.WAITING or res.status is TicketStatus.PREQUEUE:
        gw.heartbeats.beat(view.event_id, arrival, now_ms, view.config.heartbeat_grace_ms)
    observe.polls.inc(view.event_id)
    return reply(ticket_body(gw, view, ticket_id, arrival, res, now_ms))


def seen_position(request: web.BaseRequest) -> int | None:
    """``?seen=N``: the position the page showed last (a positive integer), or None.
    ValueError when it is there but not one."""
    if not request.query_string:
        return None
    raw = request.query.get("seen")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
        raise ValueError(raw)
    return int(raw)


def poll_known_ticket(
    gw: Gateway, event_id: str, ticket_id: str, request: web.BaseRequest
) -> web.Response | None:
    """The poll of a ticket this process has verified, answered from memory; None when
    the full handler must run (unknown event or id here, a Redis write, a bad query, or
    a failure)."""
    view = gw.store.views.get(event_id)
    if view is None:
        return None
    arrival = view.verified_ids.get(ticket_id)
    if arrival is None:
        return None
    try:
        seen = seen_position(request)
    except ValueError:
        return None  # the full handler answers 400
    try:
        return _poll_known(gw, view, ticket_id, arrival, seen)
    except Exception:
        log.exception("poll fast path failed; answering through the full handler")
        return None


async def poll(request: web.Request) -> web.StreamResponse:
    """The load: a known ticket is answered without an await or a Redis round trip."""
    started = time.perf_counter()
    known = poll_known_ticket(
        request.app[GATEWAY],
        request.match_info["event_id"],
        request.match_info["ticket_id"],
        request,
    )
    if known is not None:
        observe.request(TICKET_PATH, "GET", known.status, time.perf_counter() - started)
        return known
    return await _poll_in_full(request)


@json_errors
async def _poll_in_full(request: web.Request) -> web.Response:
    """A poll that needs Redis: first sight of an id here, a ticket issued a moment ago
    elsewhere, or one that lost priority and must be put back in line."""
    gw, view, ticket_id, arrival = await _ticket(request)
    try:
        seen = seen_position(request)
    except ValueError:
        raise ApiError(400, "invalid", field="seen", detail="a positive integer") from None
    now_ms = gw.store.clock.now_ms()
    stale = _stale(gw, view, arrival, now_ms)
    if stale is not None:
        return stale
    if arrival > view.seq:
        # Issued a moment ago by another gateway, or not at all.
        seq = int(await gw.redis.get(EventKeys(view.event_id).seq) or 0)
        if arrival > seq:
            return error(404, "unknown_ticket")
    res = view.resolve(arrival, now_ms, seen)
    if res.lost_priority:
        res = await _put_back(gw, view, arrival, now_ms)
    return _answer(gw, view, ticket_id, arrival, res, now_ms)


@json_errors
async def delete_ticket(request: web.Request) -> web.Response:
    gw, view, ticket_id, arrival = await _ticket(request)
    outcome = await leave(gw.scripts, view.event_id, arrival)
    if outcome is LeaveOutcome.UNKNOWN:
        return error(404, "unknown_ticket")
    if outcome is not LeaveOutcome.ALREADY_GONE:
        kind = "E" if outcome is LeaveOutcome.SESSION_ENDED else "L"
        view.apply_log([f"{kind} {arrival}"], local=True)
    if outcome is LeaveOutcome.SESSION_ENDED:
        await end_cart(gw, view.event_id, ticket_id)
    response = web.Response(status=204)
    response.del_cookie(cookie_name(view.event_id), path="/")
    return response


async def end_cart(gw: Gateway, event_id: str, ticket_id: str) -> None:
    """Tell the cart service the session is over: its seats go back now, not when the
    hold runs out, and its token opens nothing there any more. Best effort: the parent
    has left either way, and the hold frees the seats at its end."""
    token = gw.settings.service_token
    if gw.cart is None or token is None:
        return
    try:
        await call_cart(
            gw,
            "EndSession",
            cart_pb2.EndSessionRequest(event_id=event_id, ticket_id=ticket_id),
            bearer_metadata(token.get_secret_value()),
        )
    except ApiError as exc:
        log.warning("cart of %s/%s not ended: %s", event_id, ticket_id, exc.code)


@json_errors
async def get_admission(request: web.Request) -> web.Response:
    """Check an admission token offline, as the services behind the door do: the pages and
    any proxy can ask "is this session still admitted?" without a Redis round trip."""
    gw = request.app[GATEWAY]
    view = await event_view(gw, request.match_info["event_id"])
    token = bearer_token(request)
    if token is None:
        return error(401, "missing_token", headers={"WWW-Authenticate": "Bearer"})
    try:
        admission = gw.verifier.verify(token, view.event_id)
    except InvalidAdmission:
        return error(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"})
    if admission.arrival in view.ended or admission.arrival in view.left:
        return error(401, "session_ended", headers={"WWW-Authenticate": "Bearer"})
    return reply(
        {
            "event_id": view.event_id,
            "ticket_id": admission.ticket_id,
            "arrival": admission.arrival,
            "issued_at": view.config.iso(admission.issued_at * 1000),
            "expires_at": view.config.iso(admission.expires_at * 1000),
            "kid": admission.kid,
        }
    )


def add_routes(router: web.UrlDispatcher) -> None:
    """The public API. Polls first: aiohttp tries the routes under one path prefix in the
    order they were added, and polls are the load."""
    router.add_get(TICKET_PATH, poll)
    router.add_delete(TICKET_PATH, delete_ticket)
    router.add_post(EVENT_PATH + "/tickets", join)
    router.add_get(EVENT_PATH, get_event)
    router.add_get(EVENT_PATH + "/admission", get_admission)
