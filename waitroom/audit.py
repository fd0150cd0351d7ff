"""Checking a draw afterwards: seed against commitment, order against what was served."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from waitroom import keys
from waitroom.draw import DrawnOrder, seed_matches


@dataclass(slots=True)
class DrawRecord:
    """Everything needed to recompute a draw and check it; publishable as JSON."""

    event_id: str
    commitment: str
    seed: str
    prequeue: int
    prequeue_order: str
    # (line, arrival, outcome) for every line the served pointer passed, in order.
    served: list[tuple[int, int, str]] = field(default_factory=list)
    # line -> arrival for lines that are requeue entries (tickets put back in line).
    requeue_lines: dict[int, int] = field(default_factory=dict)
    # One chance per family: the lottery's entries (ascending arrivals); None otherwise.
    kept: list[int] | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "event_id": self.event_id,
                "commitment": self.commitment,
                "seed": self.seed,
                "prequeue": self.prequeue,
                "prequeue_order": self.prequeue_order,
                "served": [list(entry) for entry in self.served],
                "requeue_lines": {str(k): v for k, v in self.requeue_lines.items()},
                "kept": self.kept,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DrawRecord:
        data: dict[str, Any] = json.loads(text)
        return cls(
            event_id=data["event_id"],
            commitment=data["commitment"],
            seed=data["seed"],
            prequeue=int(data["prequeue"]),
            prequeue_order=data.get("prequeue_order", "random"),
            served=[(int(a), int(b), str(c)) for a, b, c in data.get("served", [])],
            requeue_lines={int(k): int(v) for k, v in data.get("requeue_lines", {}).items()},
            kept=None if data.get("kept") is None else [int(a) for a in data["kept"]],
        )


class DrawNotDone(LookupError):
    """The event has not been drawn yet: the seed is still secret."""


async def load_record(redis: Redis, event_id: str) -> DrawRecord:
    """Read an event's draw and served lines from Redis."""
    k = keys.EventKeys(event_id)
    # decode_responses=True: every reply is str (redis-py's types cannot say so).
    draw: dict[str, str] = await redis.hgetall(k.draw)  # type: ignore[assignment]
    cfg: dict[str, str] = await redis.hgetall(k.cfg)  # type: ignore[assignment]
    if not cfg:
        raise LookupError(f"unknown event {event_id!r}")
    if draw.get("drawn") != "1":
        raise DrawNotDone(event_id)
    audit_lines: list[str] = await redis.lrange(k.audit, 0, -1)  # type: ignore[assignment]
    served = [entry.split(" ") for entry in audit_lines]
    requeues: dict[str, str] = await redis.hgetall(k.rq)  # type: ignore[assignment]
    return DrawRecord(
        event_id=event_id,
        commitment=draw["commitment"],
        seed=draw["seed"],
        prequeue=int(draw["prequeue"]),
        prequeue_order=cfg.get("order", "random"),
        served=[(int(line), int(arrival), outcome) for line, arrival, outcome in served],
        requeue_lines={int(line): int(arrival) for line, arrival in requeues.items()},
        kept=[int(a) for a in draw["kept"].split()] if "kept" in draw else None,
    )


@dataclass(slots=True)
class Verdict:
    problems: list[str] = field(default_factory=list)
    lines_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(record: DrawRecord) -> Verdict:
    """Check the seed, then that every served line holds the ticket the draw put there."""
    verdict = Verdict()
    try:
        seed = bytes.fromhex(record.seed)
    except ValueError:
        verdict.problems.append("the seed is not hex")
        return verdict
    if not seed_matches(seed, record.commitment):
        verdict.problems.append("SHA-256(seed) does not match the published commitment")
        return verdict
    if record.kept is not None and record.kept != sorted(set(record.kept)):
        verdict.problems.append("the lottery's entries are not distinct and ascending")
        return verdict
    order = DrawnOrder.compute(
        seed, record.event_id, record.prequeue, record.prequeue_order == "fifo", record.kept
    )
    expected_line = 1
    for line, arrival, _outcome in record.served:
        if line != expected_line:
            verdict.problems.append(f"line {line} served where line {expected_line} was due")
            expected_line = line
        expected_line += 1
        if line <= record.prequeue:
            want = order.arrival_at(line)
        else:
            want = record.requeue_lines.get(line, line)
        if arrival != want:
            verdict.problems.append(f"line {line}: served arrival {arrival}, the draw says {want}")
        verdict.lines_checked += 1
    return verdict
