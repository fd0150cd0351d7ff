"""Admission tokens: EdDSA-signed JWTs with a key id, verified offline by any service.

The gateway holds the private key; the cart and payment services hold only public keys
(by key id), so a leaked verifier cannot mint admissions, and keys rotate by publishing
the new public key before signing with it.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from waitroom.settings import Settings

ISSUER = "waitroom"
ALGORITHM = "EdDSA"
LEEWAY_S = 5
# Tokens whose signature a verifier has checked, kept by the token's text. A parent's
# token comes with every click of its session (the gateway and the cart service each
# check it): the Ed25519 check was a tenth of the gateway's CPU in the 3 000-parent drill.
VERIFIED_TOKENS = 16_384


class InvalidAdmission(Exception):
    """The token is not a valid admission for this event (HTTP 401 / UNAUTHENTICATED)."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What a verified admission token says."""

    event_id: str
    ticket_id: str
    arrival: int
    issued_at: int
    expires_at: int
    kid: str
    # One chance per family: the client number the ticket identified before the draw;
    # the cart service registers that family only. Empty: no such claim.
    family: str = ""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_signing_key() -> str:
    """A fresh Ed25519 private key seed, base64url (for ``WAITROOM_TOKEN_SIGNING_KEY``)."""
    key = Ed25519PrivateKey.generate()
    return _b64(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def public_key_of(signing_key_b64: str) -> str:
    """The base64url public key that verifies tokens signed with this private key."""
    key = Ed25519PrivateKey.from_private_bytes(_unb64(signing_key_b64))
    return _b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


class AdmissionSigner:
    """Signs admission tokens with one private key and key id."""

    def __init__(self, private_seed: bytes, kid: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(private_seed)
        self.kid = kid

    @classmethod
    def from_settings(cls, settings: Settings) -> AdmissionSigner:
        return cls(settings.signing_key_bytes(), settings.token_kid)

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(
        self,
        event_id: str,
        ticket_id: str,
        arrival: int,
        issued_at: int,
        expires_at: int,
        family: str = "",
    ) -> str:
        """A token for an admitted ticket; times are Unix seconds."""
        claims: dict[str, object] = {
            "iss": ISSUER,
            "aud": event_id,
            "sub": ticket_id,
            "arr": arrival,
            "iat": issued_at,
            "exp": expires_at,
        }
        if family:
            claims["fam"] = family
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


class AdmissionVerifier:
    """Verifies admission tokens offline against a set of public keys by key id."""

    def __init__(self, public_keys: Mapping[str, Ed25519PublicKey]) -> None:
        if not public_keys:
            raise ValueError("an AdmissionVerifier needs at least one public key")
        self._keys = dict(public_keys)
        # functools.lru_cache keeps results, never exceptions: a bad token costs a full
        # check every time, as before, and cannot push good ones out.
        self._checked = functools.lru_cache(maxsize=VERIFIED_TOKENS)(self._check)

    @classmethod
    def from_settings(cls, settings: Settings) -> AdmissionVerifier:
        """Keys from ``WAITROOM_TOKEN_PUBLIC_KEYS``, plus the signing key's own if set."""
        keys = {
            kid: Ed25519PublicKey.from_public_bytes(_unb64(b64))
            for kid, b64 in settings.token_public_keys.items()
        }
        if settings.token_signing_key is not None:
            signer = AdmissionSigner.from_settings(settings)
            keys.setdefault(signer.kid, signer.public_key())
        return cls(keys)

    def verify(self, token: str, event_id: str) -> Admission:
        """Check signature, key id, issuer, event and expiry; raise InvalidAdmission if any fail."""
        return self._verify(token, event_id)

    def verify_any_event(self, token: str) -> Admission:
        """Like ``verify``, for whichever event the token names (its ``aud``): the services
        behind the door take the event from the token and touch nothing else."""
        return self._verify(token, None)

    def _verify(self, token: str, event_id: str | None) -> Admission:
        """The signature, key id, issuer and claims are checked once per token (they do not
        change: the keys are this verifier's for its life); the expiry and the event at
        every use. A token that fails is not kept: it is checked in full each time."""
        admission = self._checked(token)
        if time.time() >= admission.expires_at + LEEWAY_S:
            raise InvalidAdmission("Signature has expired")
        if event_id is not None and admission.event_id != event_id:
            raise InvalidAdmission("Audience doesn't match")
        return admission

    def _check(self, token: str) -> Admission:
        """Everything but the event: the signature by a known key, the issuer, the claims
        and (at this first check) the expiry and issue time."""
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if not isinstance(kid, str) or kid not in self._keys:
                raise InvalidAdmission("unknown key id")
            claims = jwt.decode(
                token,
                self._keys[kid],
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "aud", "iss"], "verify_aud": False},
            )
            audience, subject, arrival = claims["aud"], claims["sub"], claims.get("arr", 0)
            family = claims.get("fam", "")
            if not isinstance(audience, str) or not audience:
                raise InvalidAdmission("no event in the token")
            # Signed by us, so well formed, unless a signing key leaked: check all the same.
            if not isinstance(subject, str) or type(arrival) is not int or arrival < 0:
                raise InvalidAdmission("malformed claims")
            if not isinstance(family, str):
                raise InvalidAdmission("malformed claims")
            return Admission(
                event_id=audience,
                ticket_id=subject,
                arrival=arrival,
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
                kid=kid,
                family=family,
            )
        except jwt.PyJWTError as exc:
            raise InvalidAdmission(str(exc)) from exc
