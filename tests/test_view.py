"""The in-memory view: positions, departures, admission times and the ETA."""

from __future__ import annotations

from dataclasses import replace

from redis.asyncio import Redis

from tests.conftest import drawn_view
from waitroom.view import EventView, TicketStatus

OPENS = 1_000_000


def _view(rate: int = 60) -> EventView:
    return drawn_view(opens_ms=OPENS, prequeue=5, seq=10, rate=rate)


def test_positions_count_only_those_still_ahead() -> None:
    view = _view()
    now = OPENS + 1
    assert [view.resolve(a, now).position for a in range(1, 11)] == list(range(1, 11))
    view.apply_log(["L 3", "L 8"])
    assert view.resolve(3, now).status is TicketStatus.DONE
    assert view.resolve(4, now).position == 3
    assert view.resolve(10, now).position == 8
    assert view.waiting_count() == 8
    view.apply_log(["L 3"], local=True)  # an echo of our own write changes nothing
    assert view.resolve(10, now).position == 8


def test_admission_skip_and_requeue() -> None:
    view = _view()
    now = OPENS + 1000
    view.served = 3
    view.apply_log(["A 2 1001000", "S 3 3", "A 3 1001500"])
    first = view.resolve(1, now)
    assert first.status is TicketStatus.ADMITTED and first.admitted_at_ms == 1_001_000
    assert view.resolve(3, now).lost_priority
    view.apply_log(["R 3 11"])
    back = view.resolve(3, now)
    assert back.requeued and back.line == 11 and back.position == 8
    assert view.resolve(1, 1_001_000 + 60_000).status is TicketStatus.DONE  # session expired


def test_eta_uses_measured_rate_and_skip_share() -> None:
    view = _view(rate=120)
    now = OPENS + 1
    assert view.eta_ms(11, now) == 5_500  # configured 2/s until measured
    view.set_stats({"eta_rate_milli": "1500", "eta_skip_ppm": "500000"})
    assert view.eta_ms(11, now) == 4_000  # 10 ahead, half skipped, 1.5/s: (5 + 1) / 1.5
    view.set_stats({"eta_rate_milli": "0"})
    assert view.eta_ms(11, now) is None  # measured: nothing moves, so no promise


def test_a_measured_rate_above_the_configured_one_is_not_promised() -> None:
    """A minute faster than configured is the bucket's credit spent after a stall."""
    view = _view(rate=60)
    now = OPENS + 1
    view.set_stats({"eta_rate_milli": "1100"})
    assert view.eta_ms(11, now) == 11_000  # 1/s, as configured, not 1.1/s
    assert view.eta_basis().measured


def test_eta_when_the_door_is_full_follows_session_lengths() -> None:
    view = _view(rate=600)  # 10 per second; max_active 100
    now = OPENS + 1
    view.active = 90
    assert view.eta_ms(10, now) == 1_000  # within the door's room: the rate
    assert view.eta_ms(21, now) is None  # past it, sessions not measured yet: unknown
    view.set_stats({"eta_session_ms": "20000"})  # 100 sessions of 20 s: 5 per second
    assert view.eta_ms(21, now) == 3_200  # 10 into the room at 10/s, then 11 at 5/s
    view.active = 100
    assert view.eta_ms(21, now) == 4_200  # the door is full: all 21 at 5/s


def test_the_short_way_for_tickets_in_line_agrees_with_the_full_rules() -> None:
    """``in_line`` (the poll's short way) answers exactly as ``resolve_any`` wherever it
    answers, and it does answer plain waiting tickets: every ticket of a view with
    departures, skips, requeues, admissions and a served pointer, at every state, with and
    without a position the page showed, and after a pause."""
    view = drawn_view(opens_ms=OPENS, prequeue=8, seq=14, rate=60)
    view.served = 4
    view.apply_log(["A 2 1001000", "A 4 1001500", "S 6 4", "L 9", "E 3", "R 7 15", "L 12"])
    answered = 0
    for now in (OPENS - 500, OPENS + 2_000, OPENS + 90_000, view.config.closes_ms + 1):
        for arrival in range(1, 16):
            for seen in (None, 1, 2, 50):
                short = view.in_line(arrival, now, seen)
                full = view.resolve_any(arrival, now, seen)
                assert short is None or short == full, (arrival, now, seen, short, full)
                assert view.resolve(arrival, now, seen) == full
                answered += short is not None
    assert answered > 40  # the plain waiting tickets, open: the short way answered them
    view.config = replace(view.config, paused=True)
    assert view.in_line(10, OPENS + 2_000) is None
    assert view.resolve(10, OPENS + 2_000).status is TicketStatus.WAITING


async def test_concurrent_refreshes_fold_each_log_entry_once(redis: Redis) -> None:
    """An operator's refresh racing the background one must not skip change-log entries."""
    import asyncio

    from waitroom.keys import EventKeys
    from waitroom.viewstore import ViewStore

    k = EventKeys("camp")
    await redis.hset(
        k.cfg,
        mapping={
            "wro_ms": 0,
            "opens_ms": 1,
            "closes_ms": 10**13,
            "rate": 0,
            "max_active": 0,
            "ttl_ms": 1000,
            "hb_ms": 5000,
            "salt": "s",
        },
    )
    await redis.sadd("wr:events", "camp")
    await redis.rpush(k.log, *[f"L {a}" for a in range(1, 7001)])
    store = ViewStore(redis)
    await asyncio.gather(*(store.refresh_event("camp") for _ in range(4)))
    await redis.rpush(k.log, "L 7001")
    await asyncio.gather(store.refresh_event("camp"), store.refresh_event("camp"))
    view = store.views["camp"]
    assert view.log_index == 7001 and len(view.left) == 7001
