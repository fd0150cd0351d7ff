"""The shared clock keeps the offset of its quickest recent reading of Redis ``TIME``: a
reply that waited for a busy event loop would put the clock seconds early."""

from __future__ import annotations

from waitroom.clock import WINDOW_S, SharedClock

REDIS_S = 1_800_000_000  # Redis' clock: 5 s ahead of this process (local = REDIS_S - 5)


def _reading(clock: SharedClock, local_sent: float, delay_s: float, lag_s: float) -> None:
    """A TIME round trip sent at ``local_sent``: the reply is made ``delay_s`` later, then
    waits ``lag_s`` for the event loop before it is read."""
    made = local_sent + 5 + delay_s  # on Redis' clock
    seconds = int(made)
    clock.observe(
        (seconds, round((made - seconds) * 1e6)), local_sent, local_sent + 2 * delay_s + lag_s
    )


def test_a_reading_that_waited_for_a_busy_loop_does_not_move_the_clock() -> None:
    clock = SharedClock()
    _reading(clock, REDIS_S - 5, delay_s=0.001, lag_s=0.0)
    assert clock.synced and abs(clock.offset_ms - 5000) < 1
    _reading(clock, REDIS_S - 4, delay_s=0.001, lag_s=4.0)  # 4 s of lag: 2 s off if taken
    assert abs(clock.offset_ms - 5000) < 1


def test_a_quicker_reading_always_wins_and_a_stale_best_gives_way() -> None:
    clock = SharedClock()
    _reading(clock, REDIS_S - 5, delay_s=0.001, lag_s=1.0)  # the first reading is taken
    assert abs(clock.offset_ms - 4500) < 1
    _reading(clock, REDIS_S - 4, delay_s=0.001, lag_s=0.0)
    assert abs(clock.offset_ms - 5000) < 1
    # Past the window, the best reading is too old to trust alone: the next one is taken,
    # and a quicker one after it takes over again.
    _reading(clock, REDIS_S - 4 + WINDOW_S + 1, delay_s=0.001, lag_s=0.2)
    assert abs(clock.offset_ms - 4900) < 1
    _reading(clock, REDIS_S - 4 + WINDOW_S + 2, delay_s=0.001, lag_s=0.0)
    assert abs(clock.offset_ms - 5000) < 1
