from __future__ import annotations

import base64
import hashlib

import pytest

from waitroom import ticket_ids


def test_round_trip_and_forgery() -> None:
    key = ticket_ids.event_key(b"s" * 32, "camp", "salt")
    tid = ticket_ids.encode(key, 12345)
    assert len(tid) == ticket_ids.ID_LENGTH
    arrival, raw = ticket_ids.parse(tid)
    assert arrival == 12345 and ticket_ids.verify(key, raw)
    other = ticket_ids.event_key(b"s" * 32, "other", "salt")
    assert not ticket_ids.verify(other, raw)
    # Change the arrival number, keep the tag: refused.
    forged = ticket_ids.encode(key, 12346)[:7] + tid[7:]
    assert not ticket_ids.verify(key, ticket_ids.parse(forged)[1])


@pytest.mark.parametrize(
    "bad", ["", "short", "A" * 23, "!" * 22, "AAAAAAAAAAAAAAAAAAAAAA", "é" * 22]
)
def test_malformed(bad: str) -> None:
    with pytest.raises(ticket_ids.BadTicketId):
        ticket_ids.parse(bad)


def test_an_id_is_the_arrival_and_its_keyed_blake2b_tag() -> None:
    """The format does not change between releases (an id issued by the gateway before an
    upgrade still verifies), whatever the way the tag is computed; and one key's hasher
    never leaks into another's."""
    keys = [ticket_ids.event_key(b"s" * 32, event, "salt") for event in ("camp", "pool")]
    for arrival in (1, 77, 2**39):
        for key in keys * 2:
            head = arrival.to_bytes(5, "big")
            tag = hashlib.blake2b(head, key=key, digest_size=11).digest()
            expected = base64.urlsafe_b64encode(head + tag).rstrip(b"=").decode()
            assert ticket_ids.encode(key, arrival) == expected
            assert ticket_ids.verify(key, head + tag)
