"""Ticket writes: joining (in batches), leaving, and requeueing after lost priority."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

from waitroom.keys import EventKeys
from waitroom.metrics import REDIS_LATENCY, timed
from waitroom.scripts import Scripts


class JoinCode(enum.IntEnum):
    ISSUED = 0
    NOT_OPEN = 1
    CLOSED = 2
    RATE_LIMITED = 3
    UNKNOWN_EVENT = 4


class JoinResult(NamedTuple):
    """One join's outcome. A tuple, not a frozen dataclass: one is made for every join, and
    a frozen dataclass's ``__init__`` costs three times as much."""

    code: JoinCode
    arrival: int
    admitted: bool
    now_ms: int
    retry_after_ms: int


# JoinCode(n) goes through enum's look-up; this is an index (the codes are 0, 1, 2, ...).
_CODES = tuple(sorted(JoinCode))


class LeaveOutcome(enum.IntEnum):
    UNKNOWN = -1
    ALREADY_GONE = 0
    LEFT_LINE = 1
    SESSION_ENDED = 2


async def join_batch(
    scripts: Scripts,
    event_id: str,
    clients: Sequence[str],
    limit: int,
    window_ms: int,
    proof_ttl_ms: int = 60_000,
) -> list[JoinResult]:
    """Issue one ticket per client key, in order, with one atomic script call. A client
    key ``pow:<id>`` (a solved join proof) is good for one ticket, once."""
    k = EventKeys(event_id)
    fixed = [k.cfg, k.draw, k.seq, k.served, k.hb, k.active, k.bucket, k.log, k.audit, k.stats]
    with timed(REDIS_LATENCY, "join"):
        replies = await scripts.join(
            keys=fixed + [k.rate_limit(client) for client in clients],
            args=[limit, window_ms, proof_ttl_ms],
        )
    now_ms, packed = int(replies[0]), str(replies[1])  # decode_responses: str
    results = []
    for group in packed.split():
        code, arrival, admitted, retry = group.split(",")
        results.append(
            JoinResult(_CODES[int(code)], int(arrival), admitted == "1", now_ms, int(retry))
        )
    return results


async def leave(scripts: Scripts, event_id: str, arrival: int) -> LeaveOutcome:
    """Leave the line, or end the admitted session and free its slot."""
    k = EventKeys(event_id)
    reply = await scripts.leave(
        keys=[k.seq, k.st, k.active, k.skip, k.hb, k.log, k.stats], args=[arrival]
    )
    return LeaveOutcome(int(reply))


async def requeue(scripts: Scripts, event_id: str, arrival: int) -> tuple[int, int]:
    """Put a ticket that lost priority at the end of the line: (code, line); see requeue.lua."""
    k = EventKeys(event_id)
    code, line = await scripts.requeue(
        keys=[k.cfg, k.seq, k.hb, k.cur, k.rq, k.skip, k.log, k.stats], args=[arrival]
    )
    return int(code), int(line)


HEARTBEATS_PER_CALL = 2_000  # bounds one script's run (Redis serves nothing else meanwhile)


async def record_heartbeats(scripts: Scripts, seen: dict[str, dict[int, int]]) -> None:
    """Write gathered heartbeats (event -> arrival -> ms), never moving a ticket's
    recorded time back (heartbeat.lua): one call per event and 2 000 tickets."""
    for event_id, beats in seen.items():
        hb = EventKeys(event_id).hb
        items = list(beats.items())
        for start in range(0, len(items), HEARTBEATS_PER_CALL):
            packed = ",".join(f"{a}:{ms}" for a, ms in items[start : start + HEARTBEATS_PER_CALL])
            with timed(REDIS_LATENCY, "heartbeats"):
                await scripts.heartbeat(keys=[hb], args=[packed])
