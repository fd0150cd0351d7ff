"""Services run as their own processes (a gateway from a wheel or an image, queue
services): their environment, and the check that a gateway serves an event end to end
(admin API, a join through its Lua script, a page from a template, a static file)."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import AUTH
from waitroom.redis_server import free_port
from waitroom.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


def shared_env(settings: Settings) -> dict[str, str]:
    """The WAITROOM_* settings every process of the tests' stack shares: the Redis and
    the secrets of ``settings``."""
    assert settings.admin_token and settings.ticket_secret and settings.token_signing_key
    return {
        "WAITROOM_REDIS_URL": settings.redis_url,
        "WAITROOM_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "WAITROOM_ADMIN_TOKEN": settings.admin_token.get_secret_value(),
        "WAITROOM_TICKET_SECRET": settings.ticket_secret.get_secret_value(),
        "WAITROOM_TOKEN_SIGNING_KEY": settings.token_signing_key.get_secret_value(),
    }


def gateway_env(settings: Settings, port: int) -> dict[str, str]:
    """The WAITROOM_* settings of a gateway on 127.0.0.1:``port`` using the tests' Redis,
    its operator listener on a free port (``WAITROOM_ADMIN_PORT``)."""
    return {
        **shared_env(settings),
        "WAITROOM_HTTP_HOST": "127.0.0.1",
        "WAITROOM_HTTP_PORT": str(port),
        "WAITROOM_ADMIN_PORT": str(free_port()),
        "WAITROOM_JOIN_LIMIT": "100000",  # other tests joined from this address too
    }


def assert_serves_an_event(base: str, operator_base: str) -> None:
    event_id = f"proc-{secrets.token_hex(4)}"  # Redis is shared with other tests
    now = datetime.now(UTC)
    event = {
        "waiting_room_opens_at": (now - timedelta(seconds=1)).isoformat(),
        "opens_at": (now + timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(hours=2)).isoformat(),
        "admit_per_minute": 60,
        "max_active": 10,
    }
    put = urllib.request.Request(
        f"{operator_base}/admin/v1/events/{event_id}", data=json.dumps(event).encode(),
        method="PUT", headers={**AUTH, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(put, timeout=5) as answer:
        assert answer.status == 201
    # The operator's paths live on the operator listener only.
    assert get(f"{base}/admin/v1/events/{event_id}/stats")[0] == 404
    assert get(f"{base}/metrics")[0] == 404
    status, metrics = get(f"{operator_base}/metrics")
    assert status == 200 and b"waitroom_" in metrics
    join = urllib.request.Request(f"{base}/api/v1/events/{event_id}/tickets", method="POST")
    with urllib.request.urlopen(join, timeout=5) as answer:  # join.lua
        assert answer.status == 201
        assert json.loads(answer.read())["status"] == "prequeue"
    status, page = get(f"{base}/events/{event_id}/")
    assert status == 200 and b"<html" in page  # a template, rendered
    status, css = get(base + "/static/app.css")
    assert status == 200 and css == (ROOT / "gateway" / "static" / "app.css").read_bytes()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
