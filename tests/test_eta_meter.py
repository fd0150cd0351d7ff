"""The leader's session meter: sessions seen active then gone give their lengths."""

from __future__ import annotations

from queue_service.eta import MIN_SESSION_SAMPLES, SESSION_WINDOW_S, SessionMeter

TTL = 2_400_000


def test_session_lengths_from_the_active_set() -> None:
    meter = SessionMeter()
    admitted = 1_000_000
    active = {str(a): admitted + TTL for a in range(MIN_SESSION_SAMPLES)}
    meter.sample(0.0, admitted, active, TTL)
    assert meter.mean_s() is None  # nobody has ended yet
    meter.sample(30.0, admitted + 30_000, {}, TTL)  # all ended 30 s after admission
    assert meter.mean_s() == 30.0
    meter.sample(SESSION_WINDOW_S + 31, admitted + 400_000, {}, TTL)
    assert meter.mean_s() is None  # out of the window
