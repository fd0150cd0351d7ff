from __future__ import annotations

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
