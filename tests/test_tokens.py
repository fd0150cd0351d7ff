"""Admission tokens are verified offline: signature, key id, event and expiry."""

from __future__ import annotations

import base64
import time

import pytest

from waitroom.settings import Settings
from waitroom.tokens import (
    AdmissionSigner,
    AdmissionVerifier,
    InvalidAdmission,
    new_signing_key,
    public_key_of,
)


def _signer(kid: str = "k1") -> tuple[AdmissionSigner, str]:
    key = new_signing_key()
    return AdmissionSigner(base64.urlsafe_b64decode(key + "="), kid), key


def test_round_trip() -> None:
    signer, _ = _signer()
    verifier = AdmissionVerifier({"k1": signer.public_key()})
    now = int(time.time())
    token = signer.sign("camp", "TICKET", 42, now, now + 600)
    admission = verifier.verify(token, "camp")
    assert (admission.ticket_id, admission.arrival, admission.kid) == ("TICKET", 42, "k1")
    assert admission.expires_at == now + 600


def test_refusals() -> None:
    signer, _ = _signer()
    forger, _ = _signer()
    verifier = AdmissionVerifier({"k1": signer.public_key()})
    now = int(time.time())
    with pytest.raises(InvalidAdmission):  # another event
        verifier.verify(signer.sign("camp", "T", 1, now, now + 600), "other")
    with pytest.raises(InvalidAdmission):  # expired
        verifier.verify(signer.sign("camp", "T", 1, now - 900, now - 300), "camp")
    with pytest.raises(InvalidAdmission):  # right kid, wrong key: forged
        verifier.verify(forger.sign("camp", "T", 1, now, now + 600), "camp")
    with pytest.raises(InvalidAdmission):  # unknown kid
        verifier.verify(_signer("k9")[0].sign("camp", "T", 1, now, now + 600), "camp")
    token = signer.sign("camp", "T", 1, now, now + 600)
    head, body, sig = token.split(".")
    with pytest.raises(InvalidAdmission):  # tampered claims
        verifier.verify(f"{head}.{body[:-2]}AA.{sig}", "camp")
    with pytest.raises(InvalidAdmission):
        verifier.verify("not-a-token", "camp")


def test_rotation_accepts_old_and_new_keys() -> None:
    old, _ = _signer("k1")
    new, _ = _signer("k2")
    verifier = AdmissionVerifier({"k1": old.public_key(), "k2": new.public_key()})
    now = int(time.time())
    assert verifier.verify(old.sign("camp", "A", 1, now, now + 60), "camp").kid == "k1"
    assert verifier.verify(new.sign("camp", "B", 2, now, now + 60), "camp").kid == "k2"


def test_verifier_from_settings_with_public_keys_only() -> None:
    signer_settings = Settings(token_signing_key=new_signing_key(), token_kid="k7")
    signer = AdmissionSigner.from_settings(signer_settings)
    assert signer_settings.token_signing_key is not None
    public = public_key_of(signer_settings.token_signing_key.get_secret_value())
    verifier = AdmissionVerifier.from_settings(Settings(token_public_keys=f"k7:{public}"))
    now = int(time.time())
    assert verifier.verify(signer.sign("camp", "A", 1, now, now + 60), "camp").arrival == 1


@pytest.mark.parametrize("arr", ["12", 1.5, True, -1, None, [1]])
def test_a_signed_token_with_malformed_claims_is_refused(arr: object) -> None:
    """A validly signed token whose ``arr`` is not a whole number (a leaked key, a bug in
    a signer) is refused, not a 500."""
    signer, _ = _signer()
    verifier = AdmissionVerifier({"k1": signer.public_key()})
    now = int(time.time())
    token = signer.sign("camp", "T", arr, now, now + 600)  # type: ignore[arg-type]
    with pytest.raises(InvalidAdmission):
        verifier.verify(token, "camp")


def test_a_token_checked_once_is_still_held_to_its_expiry_and_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signature is checked once per token; the expiry and the event at every use."""
    signer, _ = _signer()
    verifier = AdmissionVerifier({"k1": signer.public_key()})
    now = int(time.time())
    token = signer.sign("camp", "T", 7, now, now + 60)
    assert verifier.verify(token, "camp").arrival == 7
    assert verifier.verify_any_event(token).event_id == "camp"
    with pytest.raises(InvalidAdmission):  # the same token, for another event
        verifier.verify(token, "other")
    assert verifier._checked.cache_info().misses == 1  # one signature check for the three
    monkeypatch.setattr(time, "time", lambda: now + 64.5)  # within the leeway
    assert verifier.verify(token, "camp").ticket_id == "T"
    monkeypatch.setattr(time, "time", lambda: now + 65)  # past it
    with pytest.raises(InvalidAdmission):
        verifier.verify(token, "camp")
    with pytest.raises(InvalidAdmission):
        verifier.verify_any_event(token)


def test_a_refused_token_is_checked_in_full_every_time() -> None:
    signer, _ = _signer()
    forger, _ = _signer()
    verifier = AdmissionVerifier({"k1": signer.public_key()})
    now = int(time.time())
    forged = forger.sign("camp", "T", 1, now, now + 600)
    for _ in range(3):
        with pytest.raises(InvalidAdmission):
            verifier.verify(forged, "camp")
    assert verifier._checked.cache_info().currsize == 0
