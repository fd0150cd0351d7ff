"""The fault drill's parts that need no hosts: its schedule is validated before anything
starts, the slow link holds bytes back by the delay it is told and passes them in order,
and the verdicts on fault windows judge what they say (loadtests/faults.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from loadtests import faults, slowlink
from loadtests.faults import FaultSpec, Injected
from waitroom.redis_server import free_port


def test_each_fault_has_exactly_one_action(tmp_path: Path) -> None:
    schedule = tmp_path / "faults.toml"
    schedule.write_text('[[fault]]\nat_s = 5\nkill = "cart_service"\nlink_down = "gw-a"\n')
    with pytest.raises(faults.BadSchedule, match="exactly one of"):
        faults.load_schedule(schedule)
    schedule.write_text("[[fault]]\nat_s = 5\n")
    with pytest.raises(faults.BadSchedule, match="exactly one of"):
        faults.load_schedule(schedule)
    schedule.write_text('[[fault]]\nat_s = 5\nslow = "gateways"\n')
    with pytest.raises(faults.BadSchedule, match=r"fault\.0\.slow"):
        faults.load_schedule(schedule)
    shipped = faults.load_schedule(faults.DEFAULT_SCHEDULE)
    kinds = {
        next(k for k in ("kill", "link_down", "slow", "restart") if getattr(f, k)) for f in shipped
    }
    assert kinds == {"kill", "link_down", "slow", "restart"}


async def test_the_slow_link_holds_bytes_back_by_its_delay_in_order(tmp_path: Path) -> None:
    closed = asyncio.Event()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = f"127.0.0.1:{upstream.sockets[0].getsockname()[1]}"
    control = tmp_path / "link.json"
    control.write_text(json.dumps({"delay_ms": 300}))
    port = free_port()
    server = asyncio.create_task(
        slowlink.serve(f"127.0.0.1:{port}", target, slowlink.Control(control))
    )
    try:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the control file has been read
        started = time.monotonic()
        writer.write(b"one")
        writer.write(b"two")
        await writer.drain()
        got = b""
        while len(got) < 6:
            got += await reader.read(1024)
        # Held back on the way there and on the way back: never less than twice the delay.
        assert time.monotonic() - started >= 0.6
        assert got == b"onetwo"
        control.write_text(json.dumps({"delay_ms": 0}))
        await asyncio.sleep(0.5)
        writer.write(b"three")
        await writer.drain()
        assert await reader.read(1024) == b"three"
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(closed.wait(), 5)  # the link passed the end along
        await asyncio.sleep(0.1)
    finally:
        server.cancel()
        upstream.close()
        await upstream.wait_closed()


def _struck(target: str, at: float, back_after_s: float, **spec: object) -> Injected:
    fault = Injected(FaultSpec(at_s=0, **spec), at=at, target=target)
    fault.back_after_s = back_after_s
    return fault


def test_the_error_budget_and_the_calm_night_are_judged_by_window() -> None:
    kill = _struck("cart_service", at=1000.0, back_after_s=1.0, kill="cart_service")
    # 100 requests a second; 4 seconds of 10 % 5xx inside the window (from the strike to
    # 15 s after the victim was back), none outside.
    seconds = {s: [100, 0, 0, 0, 0] for s in range(980, 1040)}
    for s in range(1000, 1004):
        seconds[s] = [100, 10, 10, 0, 0]
    _, ok, detail = faults.error_budget([kill], seconds)
    assert ok, detail  # 40 of 1600 in the window: 2.5 %
    assert faults.calm_failures([kill], seconds)[1]
    for s in range(1000, 1010):
        seconds[s] = [100, 10, 10, 0, 0]
    assert not faults.error_budget([kill], seconds)[1]  # 100 of 1600: 6.25 %
    seconds[1030] = [100, 1, 0, 1, 0]  # a failure after the window: the calm check sees it
    assert not faults.calm_failures([kill], seconds)[1]


def test_slow_requests_are_placed_in_the_fault_windows() -> None:
    link = _struck("gw-a", at=1000.0, back_after_s=30.0, link_down="gw-a")
    slow = [
        [1002.5, "POST", "join", 504, 15_020],  # in flight when the link went down
        [1010.0, "GET", "poll", 0, 9_000],
        [1050.0, "POST", "join", 201, 5_200],  # after the window (1000 to 1045)
    ]
    lines = faults.slow_requests([link], slow, opens_at=990.0)
    assert lines == [
        "gw-a window: 2, sent from +12 s to +20 s after the draw, longest 15.0 s; "
        "POST join 1, GET poll 1; answered 504: 1, no answer: 1",
        "outside the fault windows: 1, sent from +60 s to +60 s after the draw, longest "
        "5.2 s; POST join 1; answered 201: 1",
    ]
    assert faults.slow_requests([link], [], opens_at=990.0) == []


def test_a_position_that_rose_is_reported() -> None:
    calm = [{"first_position": 5}, {"first_position": 9}]
    assert faults.positions_never_rose(calm)[1]
    _, ok, detail = faults.positions_never_rose([*calm, {"first_position": 3, "rose": 2}])
    assert not ok and "by up to 2" in detail


def test_a_parent_requeued_while_polling_is_reported() -> None:
    night: list[dict[str, Any]] = [
        {"first_position": 5},
        {"first_position": 8, "requeued": True, "silent_s": 19.2},  # a poll hung 15 s
        {"first_position": 9, "slept": True, "requeued": True, "silent_s": 26.3},
        {"first_position": 7, "requeued": True, "silent_s": 14.6},  # one flush late
    ]
    _, ok, detail = faults.kept_their_place(night, timeout_s=15)
    assert ok, detail
    assert "3 requeued (2 of them never slept); 0 had been heard" in detail
    polling: dict[str, Any] = {
        "first_position": 4,
        "requeued": True,
        "silent_s": 4.1,
    }  # taken for gone
    _, ok, detail = faults.kept_their_place([*night, polling], timeout_s=15)
    assert not ok and "1 had been heard from within 14 s (the shortest silence 4.1 s)" in detail
