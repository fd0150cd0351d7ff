"""Event validation and state: the operator's errors are told plainly."""

from __future__ import annotations

from datetime import datetime

import pytest

from waitroom.events import InvalidEvent, parse_patch, parse_spec
from waitroom.schedule import EventConfig, EventState, spec_to_fields

BASE = {
    "waiting_room_opens_at": "2026-05-11T18:30:00-04:00",
    "opens_at": "2026-05-11T19:00:00-04:00",
    "closes_at": "2026-05-11T21:00:00-04:00",
    "admit_per_minute": 300,
    "max_active": 500,
}


def test_defaults_and_storage() -> None:
    spec = parse_spec(BASE)
    assert (spec.timezone, spec.session_ttl_s, spec.heartbeat_timeout_s) == (
        "America/Toronto",
        2400,
        120,
    )
    config = EventConfig.from_hash("camp", {**spec_to_fields(spec), "salt": "x"})
    opens = int(datetime.fromisoformat("2026-05-11T19:00:00-04:00").timestamp() * 1000)
    assert config.opens_ms == opens
    assert config.iso(config.opens_ms) == "2026-05-11T19:00:00-04:00"
    assert config.state(opens - 1) is EventState.PREQUEUE
    assert config.state(opens) is EventState.OPEN
    assert config.state(config.wro_ms - 1) is EventState.SCHEDULED
    assert config.state(config.closes_ms) is EventState.CLOSED


def test_naive_times_are_in_the_event_timezone() -> None:
    spec = parse_spec(
        {
            **BASE,
            "waiting_room_opens_at": "2026-05-11T18:30:00",
            "opens_at": "2026-05-11T19:00:00",
            "closes_at": "2026-05-11T21:00:00",
        }
    )
    assert spec.opens_at.isoformat() == "2026-05-11T19:00:00-04:00"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"opens_at": "2026-05-11T18:00:00-04:00"}, "before waiting_room_opens_at"),
        ({"closes_at": "2026-05-11T19:00:00-04:00"}, "closes_at must be after"),
        ({"admit_per_minute": -1}, "admit_per_minute"),
        ({"max_active": -5}, "max_active"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"prequeue_order": "vip"}, "prequeue_order"),
        ({"opens_at": "tomorrow"}, "opens_at"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_bodies_say_why(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_spec({**BASE, **change})
    assert fragment in caught.value.detail


def test_missing_and_non_object_bodies() -> None:
    with pytest.raises(InvalidEvent):
        parse_spec({"admit_per_minute": 3})
    with pytest.raises(InvalidEvent):
        parse_spec([1, 2])
    with pytest.raises(InvalidEvent, match="nothing to change"):
        parse_patch({})
    assert parse_patch({"admit_per_minute": 0}).admit_per_minute == 0
