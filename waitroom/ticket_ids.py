"""Ticket ids: the arrival number plus a MAC, so any process checks an id without Redis.

An id is 16 bytes, base64url without padding (22 characters): 5 bytes of arrival number,
big-endian, then an 11-byte keyed BLAKE2b tag of those 5 bytes, keyed by a key derived
(HMAC-SHA256) from the server secret, the event id and the event's salt. Without the secret
an id cannot be guessed or forged (88-bit tag); the arrival number is the parent's own
priority number and is not a secret. Keyed BLAKE2b is a MAC by design and costs a quarter
of an HMAC-SHA256 call: every poll that a gateway has not seen before checks one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

_SEQ_BYTES = 5
_TAG_BYTES = 11
ID_LENGTH = 22
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


class BadTicketId(ValueError):
    """The id is not of the ticket-id form at all (HTTP 400)."""


def event_key(secret: bytes, event_id: str, salt: str) -> bytes:
    """The MAC key of one event's ticket ids."""
    return hmac.digest(secret, f"ticket|{event_id}|{salt}".encode(), "sha256")


_MACS: dict[bytes, hashlib.blake2b] = {}  # a keyed hasher per event key, to copy
_MACS_MAX = 1024


def _tag(key: bytes, head: bytes) -> bytes:
    """The MAC of ``head``. Copying a hasher already keyed costs a third less than keying
    a new one, which every join and every first poll on a gateway does."""
    mac = _MACS.get(key)
    if mac is None:
        if len(_MACS) >= _MACS_MAX:
            _MACS.clear()
        mac = _MACS[key] = hashlib.blake2b(key=key, digest_size=_TAG_BYTES)
    mac = mac.copy()
    mac.update(head)
    return mac.digest()


def encode(key: bytes, arrival: int) -> str:
    """The id of the ticket with this arrival number."""
    head = arrival.to_bytes(_SEQ_BYTES, "big")
    return base64.urlsafe_b64encode(head + _tag(key, head)).rstrip(b"=").decode("ascii")


def parse(ticket_id: str) -> tuple[int, bytes]:
    """Split an id into (arrival, raw bytes) without checking its MAC; BadTicketId if malformed."""
    if not _ID_RE.match(ticket_id):
        raise BadTicketId(ticket_id)
    try:
        raw = base64.urlsafe_b64decode(ticket_id + "==")
    except (binascii.Error, ValueError) as exc:
        raise BadTicketId(ticket_id) from exc
    arrival = int.from_bytes(raw[:_SEQ_BYTES], "big")
    if arrival == 0:
        raise BadTicketId(ticket_id)
    return arrival, raw


def verify(key: bytes, raw: bytes) -> bool:
    """Whether the MAC of a parsed id is right for this event."""
    return hmac.compare_digest(_tag(key, raw[:_SEQ_BYTES]), raw[_SEQ_BYTES:])


def b64_secret(secret: str) -> bytes:
    """The raw bytes of a base64url secret as found in WAITROOM_TICKET_SECRET."""
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
