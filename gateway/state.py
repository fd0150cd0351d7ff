"""What the handlers share: one typed object under one AppKey."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from gateway.heartbeats import HeartbeatBuffer
from gateway.joiner import JoinCoalescer
from waitroom import ticket_ids
from waitroom.scripts import Scripts
from waitroom.settings import Settings
from waitroom.tokens import AdmissionSigner, AdmissionVerifier
from waitroom.view import EventView
from waitroom.viewstore import ViewStore


@dataclass(slots=True)
class Gateway:
    settings: Settings
    redis: Redis
    scripts: Scripts
    store: ViewStore
    heartbeats: HeartbeatBuffer
    joiner: JoinCoalescer
    signer: AdmissionSigner
    verifier: AdmissionVerifier
    ticket_secret: bytes
    # The cart service's stub (CartServiceStub), None when no cart service is configured.
    cart: Any = None
    _event_keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    # (event, arrival, admitted_at) -> token: a ticket's token is signed once.
    tokens: dict[tuple[str, int, int], str] = field(default_factory=dict)
    # The key of join proofs' challenges (gateway/proof.py), derived from the ticket secret.
    proof_key: bytes = b""
    # The key of the family keys in Redis (one chance per family): no client number is
    # a key there, only its HMAC.
    family_key: bytes = b""
    # The public catalogue's answers, by query: (fresh until, the answer); gateway/browse.py.
    browse_copies: dict[Any, tuple[float, asyncio.Future[bytes]]] = field(default_factory=dict)
    # Work that outlives its request (a paid session's end, tried again after an outage).
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def ticket_key(self, view: EventView) -> bytes:
        """The MAC key of the event's ticket ids (derived once per event and salt)."""
        cache_key = (view.event_id, view.config.salt)
        key = self._event_keys.get(cache_key)
        if key is None:
            key = ticket_ids.event_key(self.ticket_secret, view.event_id, view.config.salt)
            self._event_keys[cache_key] = key
        return key

    def verify_ticket(self, view: EventView, ticket_id: str) -> int | None:
        """The arrival number of a genuine ticket id of this event, or None for a forgery.

        An id already verified here is a dict look-up. Raises ``ticket_ids.BadTicketId``
        when the id is not of the ticket-id form.
        """
        known = view.verified_ids.get(ticket_id)
        if known is not None:
            return known
        arrival, raw = ticket_ids.parse(ticket_id)
        if not ticket_ids.verify(self.ticket_key(view), raw):
            return None
        self.remember(view, ticket_id, arrival)
        return arrival

    def remember(self, view: EventView, ticket_id: str, arrival: int) -> None:
        """Note a genuine id (checked, or issued here) so its polls skip the MAC."""
        cache = view.verified_ids
        if len(cache) >= VERIFIED_CACHE_MAX:
            cache.clear()
        cache[ticket_id] = arrival


VERIFIED_CACHE_MAX = 1_000_000
GATEWAY = web.AppKey("gateway", Gateway)
# On the operator listener's application: the public application, whose clean-up
# context builds (and closes) the one Gateway both listeners share.
PUBLIC_APP = web.AppKey("public_app", web.Application)


def gateway_of(request: web.Request) -> Gateway:
    """The process's Gateway, from a handler of either listener."""
    return request.app.get(PUBLIC_APP, request.app)[GATEWAY]
