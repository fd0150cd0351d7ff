"""`waitroom verify-draw`: the documented command an auditor runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.conftest import create_event, join, statuses, wait_for
from waitroom import keys

Client = TestClient[Any, Any]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waitroom.cli", *args], capture_output=True, text=True, timeout=60
    )


async def test_verify_draw_from_redis_and_from_a_record(
    client: Client, redis: Redis, leader: QueueService, redis_server: Any, tmp_path: Path
) -> None:
    await create_event(client, redis, opens_in=1.0, admit_per_minute=60_000)
    early = _cli("verify-draw", "camp", *_redis(redis_server))
    assert early.returncode == 2 and "still secret" in early.stdout
    tickets = [await join(client) for _ in range(25)]

    async def admitted() -> bool:
        return all(s == "admitted" for s in await statuses(client, tickets))

    await wait_for(admitted, 15)
    ok = await asyncio.to_thread(_cli, "verify-draw", "camp", *_redis(redis_server))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all 25 served lines" in ok.stdout

    record = await asyncio.to_thread(_cli, "draw-record", "camp", *_redis(redis_server))
    path = tmp_path / "draw.json"
    path.write_text(record.stdout)
    offline = await asyncio.to_thread(_cli, "verify-draw", "--record", str(path))
    assert offline.returncode == 0, offline.stdout

    # Swap who was served at lines 1 and 2: the check must fail.
    audit_key = keys.EventKeys("camp").audit
    first, second = [str(entry) for entry in await redis.lrange(audit_key, 0, 1)]
    l1, a1, o1 = first.split(" ")
    l2, a2, o2 = second.split(" ")
    await redis.lset(audit_key, 0, f"{l1} {a2} {o1}")
    await redis.lset(audit_key, 1, f"{l2} {a1} {o2}")
    bad = await asyncio.to_thread(_cli, "verify-draw", "camp", *_redis(redis_server))
    assert bad.returncode == 1 and "FAIL: line 1" in bad.stdout


def _redis(server: Any) -> list[str]:
    return ["--redis-url", server.url, *(["--redis-cluster"] if server.cluster else [])]


def test_keygen_prints_usable_settings() -> None:
    out = _cli("keygen").stdout
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert names == {
        "WAITROOM_TICKET_SECRET",
        "WAITROOM_TOKEN_SIGNING_KEY",
        "WAITROOM_TOKEN_PUBLIC_KEYS",
        "WAITROOM_TOKEN_KID",
        "WAITROOM_ADMIN_TOKEN",
        "WAITROOM_SERVICE_TOKEN",
    }
