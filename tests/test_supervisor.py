"""A stack that heals (``make run``): a process killed with SIGKILL is started again with
a back-off, Redis too, the standby queue service takes the lead, and parents keep their
places through all of it."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from waitroom.devstack import LocalStack, http_request, private_env
from waitroom.supervisor import BACKOFF_FIRST_S, Child, Supervisor


def _wait(condition: Callable[[], bool], seconds: float, tick: Callable[[], object]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        tick()
        time.sleep(0.1)


def _restarted(child: Child, old_pid: int) -> bool:
    return child.running() and child.process is not None and child.process.pid != old_pid


def test_a_dead_child_restarts_with_a_growing_back_off() -> None:
    lines: list[str] = []
    supervisor = Supervisor(say=lambda line, **_: lines.append(line))
    child = supervisor.add(
        Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
    )
    try:
        for round_, backoff in enumerate((BACKOFF_FIRST_S, BACKOFF_FIRST_S * 2), start=1):
            assert child.process is not None
            first_pid = child.process.pid
            child.process.kill()
            child.process.wait()
            assert supervisor.check() == [child]  # seen dead once, then waiting
            assert child.backoff_s == backoff and supervisor.alive()
            _wait(child.running, 10, supervisor.check)
            assert child.process.pid != first_pid and child.restarts == round_
        assert "sleeper exited (code -9)" in lines[0] and "restarted" in lines[1]
    finally:
        supervisor.stop()
    assert not child.running()


def test_without_healing_a_death_is_reported() -> None:
    supervisor = Supervisor(restart=False, say=lambda *a, **k: None)
    child = supervisor.add(Child("one-shot", [sys.executable, "-c", "pass"], dict(os.environ)))
    assert child.process is not None
    child.process.wait()
    assert supervisor.check() == [child] and not supervisor.alive()
    time.sleep(BACKOFF_FIRST_S * 2)
    supervisor.check()
    assert not child.running() and child.restarts == 0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    env = {
        **os.environ,
        **private_env(),
        "WAITROOM_LEASE_TTL_MS": "1000",
        "WAITROOM_JOIN_LIMIT": "100000",
    }
    env.pop("WAITROOM_REDIS_URL", None)  # the stack starts its own, and heals it
    local = LocalStack(
        tmp_path, env, gateways=1, log_dir=tmp_path / "logs", queue_standby=True, heal=True
    )
    try:
        local.start()
        assert local.wait_ready(timeout_s=60)
        yield local
    finally:
        local.stop()


def test_killed_processes_and_redis_come_back_and_parents_keep_their_places(
    stack: LocalStack,
) -> None:
    base, admin = stack.base, stack.env["WAITROOM_ADMIN_TOKEN"]
    now = datetime.now(UTC)
    event = {
        "waiting_room_opens_at": (now - timedelta(seconds=1)).isoformat(),
        "opens_at": (now + timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(hours=2)).isoformat(),
        "admit_per_minute": 60, "max_active": 10, "heartbeat_timeout_s": 600,
    }  # fmt: skip
    assert http_request("PUT", f"{stack.admin_base}/admin/v1/events/camp", admin, event)[0] == 201
    tickets = []
    for _ in range(3):
        status, body = http_request("POST", f"{base}/api/v1/events/camp/tickets")
        assert status == 201
        tickets.append(json.loads(body))
    time.sleep(1.5)  # Redis' append-only file is written every second (make run's setting)
    children = {c.name: c for c in stack.supervisor.children}

    def ready() -> bool:
        return http_request("GET", base + "/readyz")[0] == 200

    killed = ("queue_service", "cart_service", "payment_adapter", "gateway-0")
    for name in killed:
        child = children[name]
        assert child.process is not None
        old_pid = child.process.pid
        os.kill(old_pid, signal.SIGKILL)
        _wait(functools.partial(_restarted, child, old_pid), 30, stack.check)
        _wait(ready, 30, stack.check)
    assert stack.redis_server is not None and stack.redis_server.process is not None
    stack.redis_server.process.kill()
    stack.redis_server.process.wait()
    _wait(ready, 30, stack.check)
    for ticket in tickets:
        url = f"{base}/api/v1/events/camp/tickets/{ticket['ticket_id']}"
        status, body = http_request("GET", url)
        assert status == 200, body
        polled = json.loads(body)
        assert (polled["status"], polled["arrival"]) == ("prequeue", ticket["arrival"])
    assert [children[name].restarts for name in killed] == [1, 1, 1, 1]
