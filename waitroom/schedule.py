"""An event's schedule and rules: validation of operator input, storage form, and state."""

from __future__ import annotations

import enum
import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_TIMEZONE = "America/Toronto"
HEARTBEAT_GRACE_MAX_MS = 30_000


class EventState(enum.StrEnum):
    SCHEDULED = "scheduled"
    PREQUEUE = "prequeue"
    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


class HelpLine(BaseModel):
    """Where parents get help on the night (Lévis: "des agents sont présents pour vous
    aider (418 839-2002), le premier jour d'inscription entre 19 h et 21 h"): shown on
    the waiting room and registration pages, in the page's language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone: str = Field(pattern=r"^[0-9+() .-]{7,32}$")
    hours_fr: str = Field("", max_length=200)
    hours_en: str = Field("", max_length=200)


class Conditions(BaseModel):
    """The registration conditions a parent accepts before paying, in each language
    (paragraphs separated by a blank line): shown in full above the checkbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fr: str = Field(min_length=1, max_length=20_000)
    en: str = Field(min_length=1, max_length=20_000)


class EventSpec(BaseModel):
    """The body of ``PUT /admin/v1/events/{id}``. Naive times are in the event's timezone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    waiting_room_opens_at: datetime
    opens_at: datetime
    closes_at: datetime
    timezone: str = DEFAULT_TIMEZONE
    admit_per_minute: int = Field(ge=0, le=1_000_000)
    max_active: int = Field(ge=0, le=10_000_000)
    session_ttl_s: int = Field(2400, ge=10, le=86_400)
    heartbeat_timeout_s: int = Field(120, ge=5, le=86_400)
    prequeue_order: Literal["random", "fifo"] = "random"
    # From here the catalogue answers without a token (Lévis: "quelques jours avant, le
    # site est accessible pour consulter les activités"); None: as soon as the event exists.
    browsing_opens_at: datetime | None = None
    # One chance per family in the draw (random order only): the lottery is among the
    # tickets whose family identified before the draw, one per family (its first);
    # the others follow it in arrival order (docs/draw.md).
    one_per_family: bool = False
    # The help line and its hours, shown on the pages; None: none shown.
    help: HelpLine | None = None
    # The registration conditions' text; None: the checkbox's label alone.
    conditions: Conditions | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        zone = _zone(self.timezone)
        for name in ("waiting_room_opens_at", "opens_at", "closes_at", "browsing_opens_at"):
            value: datetime | None = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=zone))
        if self.browsing_opens_at is not None and self.browsing_opens_at > self.opens_at:
            raise ValueError("browsing_opens_at is after opens_at")
        if self.one_per_family and self.prequeue_order != "random":
            raise ValueError("one_per_family applies to a random draw (prequeue_order random)")
        if self.opens_at < self.waiting_room_opens_at:
            raise ValueError("opens_at is before waiting_room_opens_at")
        if self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        return self


class EventPatch(BaseModel):
    """The body of ``PATCH /admin/v1/events/{id}``: what may change live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admit_per_minute: int | None = Field(None, ge=0, le=1_000_000)
    max_active: int | None = Field(None, ge=0, le=10_000_000)
    heartbeat_timeout_s: int | None = Field(None, ge=5, le=86_400)
    closes_at: datetime | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


@functools.lru_cache(maxsize=8192)
def _iso(seconds: int, tz: str) -> str:
    # Polls format "now + eta" on every answer; at one-second resolution a small cache
    # turns that into a dict lookup.
    return datetime.fromtimestamp(seconds, _zone(tz)).isoformat(timespec="seconds")


def iso_at(ms: int, tz: str) -> str:
    """RFC 3339 with ``tz``'s offset, to the second (``2027-06-01T19:20:00-04:00``); empty
    for 0, which means "not set" wherever the services keep times in milliseconds."""
    return _iso(ms // 1000, tz) if ms else ""


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def spec_to_fields(spec: EventSpec) -> dict[str, str]:
    """The ``cfg`` hash fields that store a spec (times as Unix ms)."""
    return {
        "wro_ms": str(_ms(spec.waiting_room_opens_at)),
        "opens_ms": str(_ms(spec.opens_at)),
        "closes_ms": str(_ms(spec.closes_at)),
        "tz": spec.timezone,
        "rate": str(spec.admit_per_minute),
        "max_active": str(spec.max_active),
        "ttl_ms": str(spec.session_ttl_s * 1000),
        "hb_ms": str(spec.heartbeat_timeout_s * 1000),
        "order": spec.prequeue_order,
        "browse_ms": str(_ms(spec.browsing_opens_at) if spec.browsing_opens_at else 0),
        "fam": "1" if spec.one_per_family else "0",
        "help": spec.help.model_dump_json() if spec.help is not None else "",
        "conditions": spec.conditions.model_dump_json() if spec.conditions is not None else "",
    }


def patch_to_fields(patch: EventPatch, tz: str) -> dict[str, str]:
    """The ``cfg`` hash fields a patch changes."""
    fields: dict[str, str] = {}
    if patch.admit_per_minute is not None:
        fields["rate"] = str(patch.admit_per_minute)
    if patch.max_active is not None:
        fields["max_active"] = str(patch.max_active)
    if patch.heartbeat_timeout_s is not None:
        fields["hb_ms"] = str(patch.heartbeat_timeout_s * 1000)
    if patch.closes_at is not None:
        closes = patch.closes_at
        if closes.tzinfo is None:
            closes = closes.replace(tzinfo=_zone(tz))
        fields["closes_ms"] = str(_ms(closes))
    return fields


@dataclass(frozen=True, slots=True)
class EventConfig:
    """An event as stored, read back from its ``cfg`` hash."""

    event_id: str
    wro_ms: int
    opens_ms: int
    closes_ms: int
    timezone: str
    admit_per_minute: int
    max_active: int
    session_ttl_ms: int
    heartbeat_timeout_ms: int
    prequeue_order: str
    paused: bool
    salt: str
    # When the catalogue opens to anyone (Unix ms); 0: from the event's creation.
    browse_ms: int = 0
    one_per_family: bool = False
    # The help line ({"phone", "hours_fr", "hours_en"}); None: none.
    help: dict[str, str] | None = None
    # The registration conditions ({"fr", "en"}); None: none given.
    conditions: dict[str, str] | None = None

    @classmethod
    def from_hash(cls, event_id: str, h: dict[str, str]) -> EventConfig:
        return cls(
            event_id=event_id,
            wro_ms=int(h["wro_ms"]),
            opens_ms=int(h["opens_ms"]),
            closes_ms=int(h["closes_ms"]),
            timezone=h.get("tz", DEFAULT_TIMEZONE),
            admit_per_minute=int(h["rate"]),
            max_active=int(h["max_active"]),
            session_ttl_ms=int(h["ttl_ms"]),
            heartbeat_timeout_ms=int(h["hb_ms"]),
            prequeue_order=h.get("order", "random"),
            paused=h.get("paused") == "1",
            salt=h.get("salt", ""),
            browse_ms=int(h.get("browse_ms", 0)),
            one_per_family=h.get("fam") == "1",
            help=json.loads(h["help"]) if h.get("help") else None,
            conditions=json.loads(h["conditions"]) if h.get("conditions") else None,
        )

    @property
    def heartbeat_grace_ms(self) -> int:
        """How stale a recorded heartbeat may be: gateways write each ticket's at most this
        often, and the leader waits this much past the timeout before skipping."""
        return min(HEARTBEAT_GRACE_MAX_MS, self.heartbeat_timeout_ms // 4)

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def state(self, now_ms: int) -> EventState:
        """The state at ``now_ms`` on the shared clock."""
        if now_ms < self.wro_ms:
            return EventState.SCHEDULED
        if now_ms >= self.closes_ms:
            return EventState.CLOSED
        if now_ms < self.opens_ms:
            return EventState.PREQUEUE
        return EventState.PAUSED if self.paused else EventState.OPEN

    def iso(self, ms: int) -> str:
        """An RFC 3339 time with the event's own offset, to the second."""
        return _iso(ms // 1000, self.timezone)

    def public_schedule(self) -> dict[str, object]:
        return {
            "waiting_room_opens_at": self.iso(self.wro_ms),
            "opens_at": self.iso(self.opens_ms),
            "closes_at": self.iso(self.closes_ms),
            "timezone": self.timezone,
            "admit_per_minute": self.admit_per_minute,
            "max_active": self.max_active,
            "session_ttl_s": self.session_ttl_ms // 1000,
            "heartbeat_timeout_s": self.heartbeat_timeout_ms // 1000,
            "prequeue_order": self.prequeue_order,
            "paused": self.paused,
            "browsing_opens_at": self.iso(self.browse_ms) if self.browse_ms else None,
            "one_per_family": self.one_per_family,
            "help": self.help,
            "conditions": self.conditions,
        }

    def browsable(self, now_ms: int) -> bool:
        """Whether the catalogue answers without an admission at ``now_ms``."""
        return now_ms >= self.browse_ms
