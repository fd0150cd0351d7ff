"""``waitroom run`` (``make run``): the whole stack on this machine.

Redis, the queue service, the payment adapter (sandbox provider), the cart service, a
local SMTP server that keeps every email in ``.run/mail`` (a Maildir), and the gateway.
Secrets are made once and kept in ``.run/secrets.env`` (so cookies and tokens survive a
restart); Redis keeps its data under ``.run/redis`` unless WAITROOM_REDIS_URL names one;
the ledger is ``.run/ledger.sqlite3`` unless WAITROOM_DATABASE_URL names one. A demo
event is created whose waiting room is open now and whose draw is two minutes away, with
the demo catalogue and families (``cart_service/demo.py``) behind it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from waitroom.redis_server import RedisServer, die_with_parent
from waitroom.tokens import new_signing_key, public_key_of

RUN_DIR = Path(".run")
DEMO_EVENT = "demo"
SERVICES = ("queue_service", "payment_adapter", "cart_service")


def _secrets_env(run_dir: Path) -> dict[str, str]:
    path = run_dir / "secrets.env"
    if not path.exists():
        signing = new_signing_key()
        lines = {
            "WAITROOM_TICKET_SECRET": secrets.token_urlsafe(32),
            "WAITROOM_TOKEN_SIGNING_KEY": signing,
            "WAITROOM_TOKEN_PUBLIC_KEYS": f"k1:{public_key_of(signing)}",
            "WAITROOM_TOKEN_KID": "k1",
            "WAITROOM_ADMIN_TOKEN": secrets.token_urlsafe(24),
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()), encoding="utf-8")
        path.chmod(0o600)
    values = dict(
        line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line
    )
    if "WAITROOM_SERVICE_TOKEN" not in values:  # a .run from before the cart service
        values["WAITROOM_SERVICE_TOKEN"] = secrets.token_urlsafe(24)
        with path.open("a", encoding="utf-8") as out:
            out.write(f"WAITROOM_SERVICE_TOKEN={values['WAITROOM_SERVICE_TOKEN']}\n")
    return values


def _load_demo_catalogue(database_url: str, event_id: str) -> None:
    """The demo catalogue and families under ``event_id`` (once per event)."""
    from cart_service.demo import load_demo
    from cart_service.ledger import create_schema, make_engine
    from payment_adapter.store import create_schema as create_payment_schema

    async def load() -> bool:
        engine = make_engine(database_url)
        try:
            await create_schema(engine)
            await create_payment_schema(engine)
            return await load_demo(engine, event_id)
        finally:
            await engine.dispose()

    if asyncio.run(load()):
        print(f"demo catalogue loaded for {event_id} ({database_url})", flush=True)


def _request(
    method: str, url: str, token: str | None = None, body: dict[str, object] | None = None
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def demo_schedule(now: datetime) -> dict[str, object]:
    """Waiting room open now, draw in two minutes, closes in three hours."""
    return {
        "waiting_room_opens_at": now.isoformat(),
        "opens_at": (now + timedelta(minutes=2)).isoformat(),
        "closes_at": (now + timedelta(hours=3)).isoformat(),
        "timezone": "America/Toronto",
        "admit_per_minute": 30,
        "max_active": 50,
        "heartbeat_timeout_s": 60,
    }


def run_stack(gateways: int = 1, demo: bool = True) -> int:
    RUN_DIR.mkdir(exist_ok=True)
    env = {**os.environ, **_secrets_env(RUN_DIR)}
    for name in ("WAITROOM_ADMIN_TOKEN",):
        if os.environ.get(name):
            env[name] = os.environ[name]
    host = env.setdefault("WAITROOM_HTTP_HOST", "127.0.0.1")
    port = env.setdefault("WAITROOM_HTTP_PORT", "8080")
    redis_server: RedisServer | None = None
    if not env.get("WAITROOM_REDIS_URL"):
        redis_server = RedisServer(RUN_DIR / "redis")
        redis_server.start()
        env["WAITROOM_REDIS_URL"] = redis_server.url
        print(f"redis: {redis_server.url} (data in {RUN_DIR / 'redis'})", flush=True)
    env.setdefault("WAITROOM_DATABASE_URL", f"sqlite+aiosqlite:///{RUN_DIR / 'ledger.sqlite3'}")
    smtp = f"{env.setdefault('WAITROOM_SMTP_HOST', '127.0.0.1')}:"
    smtp += env.setdefault("WAITROOM_SMTP_PORT", "8025")
    mail_dir = RUN_DIR / "mail"
    mailbox = ("-c", "aiosmtpd.handlers.Mailbox", str(mail_dir))
    commands = [
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", smtp, *mailbox],
        *([sys.executable, "-m", module] for module in SERVICES),
        *([sys.executable, "-m", "gateway"] for _ in range(gateways)),
    ]
    # Gateway processes share one port: each writes its metrics here and any of them
    # answers /metrics with the totals of all (prometheus_client's multiprocess mode).
    metrics_dir = RUN_DIR / "gateway-metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    gateway_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir.resolve())}
    children = [
        subprocess.Popen(
            command,
            env=gateway_env if command[-1] == "gateway" else env,
            preexec_fn=die_with_parent,
        )
        for command in commands
    ]
    print(f"emails: {mail_dir} (Maildir, SMTP on {smtp})", flush=True)
    parent = os.getppid()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    base = f"http://{host}:{port}"
    try:
        while not stopping:
            status, _ = _request("GET", base + "/readyz")
            if status == 200:
                break
            if any(child.poll() is not None for child in children):
                print("a service exited during start-up; see its log above", file=sys.stderr)
                return 1
            time.sleep(0.2)
        if demo and not stopping:
            now = datetime.now(UTC).replace(microsecond=0)
            status, body = _request(
                "PUT",
                f"{base}/admin/v1/events/{DEMO_EVENT}",
                env["WAITROOM_ADMIN_TOKEN"],
                demo_schedule(now),
            )
            if status == 422:  # the demo of an earlier run has drawn: start a new one
                demo_id = f"{DEMO_EVENT}-{int(now.timestamp())}"
                status, body = _request(
                    "PUT",
                    f"{base}/admin/v1/events/{demo_id}",
                    env["WAITROOM_ADMIN_TOKEN"],
                    demo_schedule(now),
                )
            else:
                demo_id = DEMO_EVENT
            if status not in (200, 201):
                print(f"demo event not created: {status} {body.decode(errors='replace')}")
            else:
                _load_demo_catalogue(env["WAITROOM_DATABASE_URL"], demo_id)
                print(f"demo event: {base}/api/v1/events/{demo_id} (draw in 2 minutes)")
                print(f"waiting room page: {base}/events/{demo_id}/  (receipts: {base}/receipts/)")
        if not stopping:
            print(f"admin token: {env['WAITROOM_ADMIN_TOKEN']}")
            print(f"ready: {base}", flush=True)
        # Also stop when whoever started us (make) is gone: a SIGTERM to make is not passed on.
        while not stopping and all(child.poll() is None for child in children):
            if os.getppid() != parent:
                break
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server is not None:
            redis_server.stop()
        print("stopped", flush=True)
    return 0
