"""The leader's session meter: how long sessions last, for the ETA when the door is full."""

from __future__ import annotations

import math

import pytest

from queue_service.eta import (
    MIN_SESSION_SAMPLES,
    SESSION_WINDOW_S,
    OutflowMeter,
    SessionMeter,
    Tick,
    kaplan_meier_mean,
)

TTL = 2_400_000


def test_a_stall_between_ticks_does_not_slow_the_measured_rate() -> None:
    """Ten ticks a second at 2.5 admissions a second (150/min), a 3 s failover, then the
    tick that spends the bucket's credit, then ten more seconds: the rate stays 2.5/s."""
    ticks, at = [], 0.0
    for stall in (False, True):
        if stall:
            at += 3.0
            ticks.append(Tick(at, 3.0, 3, 0, True))  # the first tick after the stall
        for i in range(1, 101):  # 10 s: one admission every 4 ticks
            at += 0.1
            ticks.append(Tick(at, 0.1, 1 if i % 4 == 0 else 0, 0, True))
    meters = OutflowMeter(gap_s=1.0), OutflowMeter(gap_s=5.0)
    for meter in meters:
        for tick in ticks:
            meter.record(tick)
    assert meters[0].rate_per_s(at) == pytest.approx(2.5)
    # Counted, the stall makes it 53 admissions in 23 s, 8 % slow (and worse nearer a draw).
    assert meters[1].rate_per_s(at) == pytest.approx(53 / 23)


def test_session_lengths_from_the_active_set() -> None:
    meter = SessionMeter()
    admitted = 1_000_000
    active = {str(a): admitted + TTL for a in range(MIN_SESSION_SAMPLES)}
    meter.sample(admitted, active, TTL)
    assert meter.mean_s() is None  # nobody has ended yet
    meter.sample(admitted + 30_000, {}, TTL)  # all ended 30 s after admission
    assert meter.mean_s() == 30.0
    meter.sample(admitted + int(SESSION_WINDOW_S * 1000) + 1, {}, TTL)
    assert meter.mean_s() is None  # admitted before the window


def test_the_first_sessions_to_end_do_not_make_the_door_look_fast() -> None:
    """A night's first sessions to end are its shortest. 100 sessions admitted together,
    lasting 5 s plus an exponential share of mean 15 s (as a parent's session: a few
    seconds at least, a long tail of the slow): the mean is 20 s. While few have ended
    there is no estimate; once three quarters have, the ended ones average 13 s,
    and the estimate, which counts the open ones, is within 10 % of the truth (21.4 s:
    the exponential tail, drawn from the origin, is a little heavy for a shifted one)."""
    meter = SessionMeter()
    admitted = 5_000_000
    lengths_ms = {
        str(n): 5_000 + round(-15_000 * math.log(1 - (n + 0.5) / 100)) for n in range(100)
    }
    true_mean = sum(lengths_ms.values()) / 100 / 1000
    estimates: dict[int, float | None] = {}
    for second in range(120):
        now = admitted + second * 1000
        still = {a: admitted + TTL for a, ms in lengths_ms.items() if ms > now - admitted}
        meter.sample(now, still, TTL)
        estimates[second] = meter.mean_s()
    first = min(second for second, mean in estimates.items() if mean is not None)
    open_then = sum(ms > first * 1000 for ms in lengths_ms.values())
    assert open_then <= 25 < sum(ms > (first - 1) * 1000 for ms in lengths_ms.values())
    ended_then = [ms / 1000 for ms in lengths_ms.values() if ms <= first * 1000]
    assert sum(ended_then) / len(ended_then) < 0.7 * true_mean  # what the plain mean said
    assert abs(estimates[first] - true_mean) / true_mean < 0.1  # type: ignore[operator]
    # All ended: their mean, each length seen at the next sample (up to a second late).
    assert true_mean < estimates[119] < true_mean + 1  # type: ignore[operator]


def test_sessions_admitted_since_do_not_hold_the_estimate_back() -> None:
    """Newly admitted sessions are open and young: they leave the curve's risk set before
    the lengths that decide it, so a busy door does not turn a known mean unknown."""
    meter = SessionMeter()
    admitted = 5_000_000
    first = {str(n): admitted + TTL for n in range(40)}
    meter.sample(admitted, first, TTL)
    meter.sample(admitted + 20_000, {str(n): admitted + TTL for n in range(10)}, TTL)
    known = meter.mean_s()
    assert known is not None  # 30 of 40 ended at 20 s
    newcomers = {f"new{n}": admitted + 20_000 + TTL for n in range(100)}
    meter.sample(admitted + 21_000, {str(n): admitted + TTL for n in range(10)} | newcomers, TTL)
    assert meter.mean_s() == pytest.approx(known + 1, rel=0.1)  # 110 of 140 open now


def test_kaplan_meier_mean_with_an_exponential_tail() -> None:
    # 75 ended at 10 s, 25 still open at 20 s: the curve is at 1/4 from 10 s to 20 s,
    # then an exponential tail through (20 s, 1/4).
    mean = kaplan_meier_mean([10.0] * 75, [20.0] * 25, 0.25)
    assert mean == pytest.approx(10 + 0.25 * 10 + 0.25 * 20 / math.log(4))
    assert kaplan_meier_mean([10.0] * 74, [20.0] * 26, 0.25) is None  # over a quarter open
    assert kaplan_meier_mean([4.0, 6.0], [], 0.25) == 5.0
