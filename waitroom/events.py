"""Operator actions on events: create or replace, change live, pause, resume, stats.

Shared by the gateway's operator API and the queue service's gRPC admin API, so both
say the same thing about the same event.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from waitroom import draw, keys
from waitroom.schedule import EventConfig, EventPatch, EventSpec, patch_to_fields, spec_to_fields
from waitroom.view import EventView


class UnknownEvent(LookupError):
    """No event has this id (HTTP 404 / NOT_FOUND)."""


class InvalidEvent(ValueError):
    """The operator's input is refused (HTTP 422 / INVALID_ARGUMENT); ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check_event_id(event_id: str) -> None:
    if not keys.EVENT_ID_RE.match(event_id):
        raise InvalidEvent("event id must be 1-64 of a-z, 0-9, '-', '_', starting alphanumeric")


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def parse_spec(body: Any) -> EventSpec:
    try:
        return EventSpec.model_validate(body)
    except ValidationError as exc:
        raise InvalidEvent(_validation_detail(exc)) from None


def parse_patch(body: Any) -> EventPatch:
    try:
        return EventPatch.model_validate(body)
    except ValidationError as exc:
        raise InvalidEvent(_validation_detail(exc)) from None


async def load_config(redis: Redis, event_id: str) -> EventConfig:
    if not keys.EVENT_ID_RE.match(event_id):
        raise UnknownEvent(event_id)
    h: dict[str, str] = await redis.hgetall(keys.EventKeys(event_id).cfg)  # type: ignore[assignment]
    if not h:
        raise UnknownEvent(event_id)
    return EventConfig.from_hash(event_id, h)


async def put_event(redis: Redis, event_id: str, spec: EventSpec) -> bool:
    """Create or replace an event; True when created. The seed is made once and kept."""
    check_event_id(event_id)
    k = keys.EventKeys(event_id)
    fields = spec_to_fields(spec)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(k.cfg)
        pipe.hget(k.draw, "drawn")
        existing, drawn = await pipe.execute()
    if drawn == "1":
        for name, label in (
            ("wro_ms", "waiting_room_opens_at"),
            ("opens_ms", "opens_at"),
            ("order", "prequeue_order"),
        ):
            if existing.get(name) != fields[name]:
                raise InvalidEvent(f"{label} cannot change after the draw")
    seed = draw.new_seed()
    # The list of events first, on its own: a Redis Cluster refuses one transaction over
    # it and the event's keys (another hash slot). Listed but not yet written, an event
    # is skipped by every reader (no cfg); written but not listed cannot happen.
    await redis.sadd(keys.EVENTS, event_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(k.cfg, mapping={k: v for k, v in fields.items()})
        pipe.hsetnx(k.cfg, "salt", secrets.token_urlsafe(12))
        pipe.hsetnx(k.cfg, "paused", "0")
        pipe.hsetnx(k.draw, "seed", seed.hex())
        pipe.hsetnx(k.draw, "commitment", draw.commitment(seed))
        await pipe.execute()
    return not existing


async def patch_event(redis: Redis, event_id: str, patch: EventPatch) -> EventConfig:
    """Change the live rules of an event; the leader applies them on its next tick."""
    config = await load_config(redis, event_id)
    fields = patch_to_fields(patch, config.timezone)
    closes = int(fields.get("closes_ms", config.closes_ms))
    if closes <= config.opens_ms:
        raise InvalidEvent("closes_at must be after opens_at")
    await redis.hset(keys.EventKeys(event_id).cfg, mapping={k: v for k, v in fields.items()})
    return await load_config(redis, event_id)


async def set_paused(redis: Redis, event_id: str, paused: bool) -> EventConfig:
    """Pause or resume admission (tickets are still issued while paused)."""
    await load_config(redis, event_id)
    await redis.hset(keys.EventKeys(event_id).cfg, "paused", "1" if paused else "0")
    return await load_config(redis, event_id)


def public_event(view: EventView, now_ms: int) -> dict[str, object]:
    """The public ``GET /api/v1/events/{id}`` body."""
    config = view.config
    return {
        "event_id": view.event_id,
        "state": config.state(now_ms).value,
        "waiting_room_opens_at": config.iso(config.wro_ms),
        "opens_at": config.iso(config.opens_ms),
        "closes_at": config.iso(config.closes_ms),
        "timezone": config.timezone,
        # Null: the catalogue is open to browse from the event's creation.
        "browsing_opens_at": config.iso(config.browse_ms) if config.browse_ms else None,
        # Where parents get help on the night; null when the event names none.
        "help": config.help,
        "waiting": view.waiting_count(),
        "active": view.active,
        "admit_per_minute": config.admit_per_minute,
        "max_active": config.max_active,
        # The server's clock, so pages count down to the schedule whatever the device's says.
        "now": config.iso(now_ms),
        "draw": {
            "commitment": view.commitment or None,
            "seed": view.seed_hex,
            "prequeue": view.prequeue if view.drawn else None,
            "drawn_at": config.iso(view.drawn_at_ms) if view.drawn_at_ms else None,
            "order": config.prequeue_order,
            # One chance per family: the lottery's entries once drawn (docs/draw.md).
            "one_per_family": config.one_per_family,
            "entries": None if view.kept is None else len(view.kept),
        },
    }


@dataclass(frozen=True, slots=True)
class EventStats:
    """The operator's ``stats``: counts by status, recent outflow, lost priority, ETA basis."""

    event_id: str
    state: str
    counts: dict[str, int]
    joined_total: int
    admitted_total: int
    lost_priority_total: int
    requeued_total: int
    admitted_last_minute: int
    served: int
    issued_lines: int
    eta_rate_per_minute: float
    eta_skip_share: float
    eta_source: str
    eta_session_s: float | None
    config: dict[str, object]

    def as_json(self) -> dict[str, object]:
        body = asdict(self)
        body["eta_basis"] = {
            "rate_per_minute": body.pop("eta_rate_per_minute"),
            "skip_share": body.pop("eta_skip_share"),
            "source": body.pop("eta_source"),
            # Mean admitted-session length lately (null until 20 have ended): with
            # max_active it bounds the outflow once the door is full.
            "session_seconds": body.pop("eta_session_s"),
            "configured_per_minute": self.config["admit_per_minute"],
        }
        return body


def event_stats(view: EventView, now_ms: int) -> EventStats:
    """Counts by status, totals and the ETA basis, from a (fresh) view."""
    s = {name: int(value) for name, value in view.stats.items() if value.lstrip("-").isdigit()}
    basis = view.eta_basis()
    waiting = view.waiting_count()
    return EventStats(
        event_id=view.event_id,
        state=view.state(now_ms).value,
        counts={
            "prequeue": waiting if not view.drawn else 0,
            "waiting": waiting if view.drawn else 0,
            "admitted": view.active,
            "lost_priority_not_back": len(view.skipped),
            "left": s.get("left", 0),
            "ended": s.get("ended", 0),
        },
        joined_total=s.get("joined", 0),
        admitted_total=s.get("admitted", 0),
        lost_priority_total=s.get("skipped", 0),
        requeued_total=s.get("requeued", 0),
        admitted_last_minute=s.get("admitted_last_minute", 0),
        served=view.served,
        issued_lines=view.seq,
        eta_rate_per_minute=round(basis.rate_per_s * 60, 2),
        eta_skip_share=round(basis.skip_share, 4),
        eta_source="measured" if basis.measured else "configured",
        eta_session_s=None if basis.session_s is None else round(basis.session_s, 1),
        config=view.config.public_schedule(),
    )
