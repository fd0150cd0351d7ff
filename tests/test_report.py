"""The drill report's "outflow kept up" windows (loadtests/report.py)."""

from __future__ import annotations

import pytest

from loadtests.report import Sample, outflow_windows

RATE = 150  # a minute: 2.5 a second


def night(
    seconds: int, per_s: float = 2.5, missed: range = range(0), full: range = range(0)
) -> list[Sample]:
    """A sample each second from the draw (at 0): people waiting throughout, ``per_s``
    admitted a second; the seconds in ``missed`` have no sample, those in ``full`` find
    the door full."""
    return [
        Sample(float(t), 100, 100 if t in full else 10, int(t * per_s))
        for t in range(seconds + 1)
        if t not in missed
    ]


def test_a_steady_outflow_is_judged_kept_up_in_every_window() -> None:
    windows = outflow_windows(night(60), 0.0, RATE, 100, [])
    assert [at for _, at in windows] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]
    assert all(ratio == pytest.approx(1.0) for ratio, _ in windows)


def test_a_slow_outflow_is_measured_slow() -> None:
    windows = outflow_windows(night(60, per_s=2.0), 0.0, RATE, 100, [])
    assert windows and all(ratio == pytest.approx(0.8) for ratio, _ in windows)


def test_missed_samples_skip_only_the_windows_they_fall_in() -> None:
    """Stats that did not answer for three seconds (a Redis failover) once ended the
    judging altogether: no window after them was looked at, and a short fault drill
    read "nothing to judge" although the outflow ran for fifty seconds after its faults."""
    windows = outflow_windows(night(80, missed=range(21, 24)), 0.0, RATE, 100, [])
    # The windows holding the gap are left out; the rest of the night is judged.
    assert [at for _, at in windows] == [0.0, 24.0, 29.0, 34.0, 39.0, 44.0, 49.0, 54.0, 59.0]


def test_windows_with_the_door_full_or_a_fault_are_not_judged() -> None:
    samples = night(80, full=range(0, 30))
    windows = outflow_windows(samples, 0.0, RATE, 100, [(45.0, 70.0)])
    assert windows == []  # after the full door, every 20 s window meets the fault
    assert [at for _, at in outflow_windows(samples, 0.0, RATE, 100, [])] == [
        30.0,
        35.0,
        40.0,
        45.0,
        50.0,
        55.0,
        60.0,
    ]
