"""The fair draw: a committed seed, and the uniformly random pre-queue order it decides.

The order is a Fisher-Yates shuffle driven by SHAKE-256, specified here so that anyone can
recompute it in any language:

1. ``key = seed || "|" || event_id || "|" || str(P)`` (UTF-8), where ``seed`` is the revealed
   seed (raw bytes), and ``P`` the number of arrivals in the pre-queue. Binding P and the
   event into the key means the seed alone, known before the night, does not fix who wins.
2. ``stream = SHAKE-256(key)``, read 8 bytes at a time as big-endian unsigned integers.
3. ``order = [1, 2, ..., P]`` (arrival numbers). For ``i`` from ``P-1`` down to ``1``: read
   ``r``; while ``r >= 2**64 - (2**64 mod (i+1))`` read again (no modulo bias);
   ``j = r mod (i+1)``; swap ``order[i]`` and ``order[j]``.
4. ``order[k]`` is the arrival number of the ticket served at line ``k+1``.

One chance per family (``one_per_family``): the lottery is among the ``K`` tickets that
hold a family's entry (``kept``, ascending arrival numbers, published with the draw): the
shuffle above runs with ``P = K``, and line ``k+1`` of the lottery is ``kept[order[k]-1]``.
The other pre-queue tickets follow the lottery in arrival order.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = 8
_SPACE = 1 << 64


def new_seed() -> bytes:
    """A fresh 32-byte draw seed."""
    return secrets.token_bytes(32)


def commitment(seed: bytes) -> str:
    """The published commitment to a seed: SHA-256, hex."""
    return hashlib.sha256(seed).hexdigest()


def seed_matches(seed: bytes, committed: str) -> bool:
    """Whether ``seed`` is the one committed to."""
    return hmac.compare_digest(commitment(seed), committed.lower())


def _draw_key(seed: bytes, event_id: str, prequeue: int) -> bytes:
    return seed + b"|" + event_id.encode() + b"|" + str(prequeue).encode()


def draw_order(seed: bytes, event_id: str, prequeue: int) -> array[int]:
    """Arrival numbers in served order: ``order[k]`` is served at line ``k+1``."""
    order = array("q", range(1, prequeue + 1))
    if prequeue < 2:
        return order
    xof = hashlib.shake_256(_draw_key(seed, event_id, prequeue))
    # Rejections are rare (at most one word in 2**32 for realistic P): read with headroom and
    # extend (SHAKE output is prefix-stable) in the unlikely case it runs out.
    length = _WORD * (prequeue + 64)
    stream = xof.digest(length)
    pos = 0
    for i in range(prequeue - 1, 0, -1):
        bound = i + 1
        limit = _SPACE - (_SPACE % bound)
        while True:
            if pos + _WORD > length:
                length *= 2
                stream = xof.digest(length)
            r = int.from_bytes(stream[pos : pos + _WORD], "big")
            pos += _WORD
            if r < limit:
                break
        j = r % bound
        order[i], order[j] = order[j], order[i]
    return order


@dataclass(frozen=True, slots=True)
class DrawnOrder:
    """Both directions of a drawn pre-queue: line -> arrival and arrival -> line."""

    prequeue: int
    by_line: array[int]  # by_line[L-1] = arrival at line L
    line_of_arrival: array[int]  # line_of_arrival[a-1] = line of arrival a

    @classmethod
    def compute(
        cls,
        seed: bytes,
        event_id: str,
        prequeue: int,
        fifo: bool,
        kept: Sequence[int] | None = None,
    ) -> DrawnOrder:
        """The order for a draw; ``fifo`` keeps arrival order (``prequeue_order: fifo``);
        ``kept``: one chance per family, the lottery's entries (ascending)."""
        if fifo:
            by_line = array("q", range(1, prequeue + 1))
        elif kept is not None:
            lottery = [kept[drawn - 1] for drawn in draw_order(seed, event_id, len(kept))]
            entered = set(kept)
            behind = (arrival for arrival in range(1, prequeue + 1) if arrival not in entered)
            by_line = array("q", [*lottery, *behind])
        else:
            by_line = draw_order(seed, event_id, prequeue)
        inverse = array("q", bytes(8 * prequeue))
        for index, arrival in enumerate(by_line):
            inverse[arrival - 1] = index + 1
        return cls(prequeue, by_line, inverse)

    def line(self, arrival: int) -> int:
        """The line an arrival is served at (arrivals after the pre-queue keep their number)."""
        if arrival <= self.prequeue:
            return self.line_of_arrival[arrival - 1]
        return arrival

    def arrival_at(self, line: int) -> int:
        """The pre-queue arrival at ``line``, or 0 when the line is past the pre-queue."""
        if 1 <= line <= self.prequeue:
            return self.by_line[line - 1]
        return 0
