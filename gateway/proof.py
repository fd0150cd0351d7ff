"""A proof of work for joins past an address's limit: a script pays for each ticket, a
parent behind a carrier's shared address is slowed for a second or two, never refused.

An address gets ``join_limit`` tickets per window for free (the contract's join, no body).
Past that, the 429 carries a challenge (headers ``X-Waitroom-Challenge`` and
``X-Waitroom-Challenge-Bits``; the body stays the contract's). The page solves it: it
finds a ``nonce`` such that SHA-256 of ``challenge + ":" + nonce`` starts with ``bits``
zero bits (about 2**bits hashes), and joins again with
``X-Waitroom-Proof: <challenge>:<nonce>``. Each solved challenge is good for one ticket,
once, within a minute. Challenges are HS256 JWTs (PyJWT, keyed from the ticket secret):
stateless, so any gateway process checks any other's.

A CAPTCHA provider plugs in at the same place: ``verify`` is the one function a join
with a proof goes through; a deployment can give it the provider's token and have it
return a single-use key (the provider's token id) instead.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import jwt

from gateway.replies import ApiError

HEADER = "X-Waitroom-Proof"
CHALLENGE_HEADER = "X-Waitroom-Challenge"
BITS_HEADER = "X-Waitroom-Challenge-Bits"
VALID_S = 60
_ALGORITHM = "HS256"
_ISSUER = "waitroom-join-proof"


def challenge(key: bytes, event_id: str, bits: int) -> str:
    """A fresh challenge for one ticket of ``event_id``."""
    now = int(time.time())
    claims = {
        "iss": _ISSUER,
        "aud": event_id,
        "iat": now,
        "exp": now + VALID_S,
        "bits": bits,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solve(challenge_text: str, bits: int) -> str:
    """The nonce that proves the work (what the page does, in Python: tests, tools)."""
    nonce = 0
    while True:
        digest = hashlib.sha256(f"{challenge_text}:{nonce}".encode()).digest()
        if leading_zero_bits(digest) >= bits:
            return str(nonce)
        nonce += 1


def verify(key: bytes, event_id: str, header: str) -> str:
    """The single-use key a valid proof stands for (the challenge's id); 400 ``bad_proof``
    when the header is malformed, forged, for another event, expired or not solved."""
    text, sep, nonce = header.rpartition(":")
    if not sep or not nonce or len(nonce) > 32 or len(text) > 1024:
        raise ApiError(400, "bad_proof")
    try:
        claims = jwt.decode(
            text,
            key,
            algorithms=[_ALGORITHM],
            audience=event_id,
            issuer=_ISSUER,
            options={"require": ["exp", "aud", "iss", "jti", "bits"]},
        )
    except jwt.PyJWTError:
        raise ApiError(400, "bad_proof") from None
    bits, jti = claims["bits"], claims["jti"]
    if type(bits) is not int or not isinstance(jti, str) or not 0 < len(jti) <= 32:
        raise ApiError(400, "bad_proof")
    if leading_zero_bits(hashlib.sha256(f"{text}:{nonce}".encode()).digest()) < bits:
        raise ApiError(400, "bad_proof")
    return jti
