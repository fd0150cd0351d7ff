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

import importlib.util
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from waitroom.redis_server import RedisServer, free_port, free_ports_in_a_row
from waitroom.supervisor import Child, Supervisor
from waitroom.tokens import new_signing_key, public_key_of

RUN_DIR = Path(".run")
# Ports each cart-service process listens on here (WAITROOM_CART_GRPC_LISTENERS): on one
# machine with SQLite, one process serves the whole night, and gRPC's asyncio server keeps
# one request for a new call of each method per port, re-armed a few turns of the loop
# after each call it takes in (docs/operations.md, "the way in").
CART_LISTENERS = 8
DEMO_EVENT = "demo"
REQUESTS_DEMO_EVENT = "victor"  # P'tit Victor's way: orders, then an allocation
SERVICES = ("queue_service", "payment_adapter")  # and the cart service's replicas


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


def _staff_env(run_dir: Path) -> dict[str, str]:
    """The console's accounts for ``make run``: an administrator "admin" whose password
    is made once and kept in ``.run/staff-password`` (printed at start)."""
    from gateway import staff

    path, secret = run_dir / "staff.json", run_dir / "staff-password"
    if not path.exists() or not secret.exists():
        password = secrets.token_urlsafe(12)
        account = staff.Account(
            name="admin", role="administrator", password_hash=staff.hash_password(password)
        )
        staff.write_accounts(path, {"admin": account})
        secret.write_text(password + "\n", encoding="utf-8")
        secret.chmod(0o600)
    return {"WAITROOM_STAFF_FILE": str(path.resolve())}


def private_env() -> dict[str, str]:
    """The settings of a stack of its own (drills, tests): free ports on 127.0.0.1, fresh
    secrets, no metrics ports. ``LocalStack`` fills in the rest: its own Redis (unless
    ``WAITROOM_REDIS_URL`` is set), SQLite files (unless a database is), the cart ports."""
    return {
        "WAITROOM_HTTP_HOST": "127.0.0.1",
        "WAITROOM_HTTP_PORT": str(free_port()),
        "WAITROOM_ADMIN_PORT": str(free_port()),
        "WAITROOM_QUEUE_GRPC_PORT": str(free_port()),
        "WAITROOM_PAYMENT_GRPC_PORT": (payment := str(free_port())),
        "WAITROOM_PAYMENT_TARGET": f"127.0.0.1:{payment}",
        "WAITROOM_QUEUE_METRICS_PORT": "0",
        "WAITROOM_CART_METRICS_PORT": "0",
        "WAITROOM_PAYMENT_METRICS_PORT": "0",
        "WAITROOM_SMTP_PORT": str(free_port()),
        # The drill's parents post sandbox cards themselves (no browser to frame fields).
        "WAITROOM_ACCEPT_CARD_NUMBERS": "true",
        "WAITROOM_SANDBOX_FIELDS_PORT": (fields := str(free_port())),
        "WAITROOM_PAYMENT_FIELDS_URL": f"http://127.0.0.1:{fields}",
        "WAITROOM_TICKET_SECRET": secrets.token_urlsafe(32),
        "WAITROOM_TOKEN_SIGNING_KEY": new_signing_key(),
        "WAITROOM_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "WAITROOM_SERVICE_TOKEN": secrets.token_urlsafe(24),
    }


def _load_demo_catalogue(database_url: str, event_id: str, *extra: str) -> None:
    """The demo catalogue and families under ``event_id`` (once per event), loaded by the
    cart service's own entry point (``python -m cart_service.demo``)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cart_service.demo",
            "--database",
            database_url,
            "--event",
            event_id,
            *extra,
        ],
        check=True,
    )


def http_request(
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


# P'tit Victor's conditions: an order is not a place, and is not paid when placed.
REQUESTS_CONDITIONS = {
    "fr": "Une commande validée ne peut plus être annulée. Elle reste « En attente » jusqu'à"
    " l'attribution des places par l'équipe ; chaque réservation devient alors « Réservé »"
    " ou « Annulé ». Un seul enfant par commande : en cas d'incohérence, l'ensemble des"
    " réservations peut être rejeté.\n\nSeuls les comptes validés par l'équipe peuvent"
    " réserver. La semaine proposée est la semaine type : elle vaut pour toute l'année.",
    "en": 'An order once placed cannot be cancelled. It stays "Pending" until the team'
    ' allocates the places; each booking then becomes "Reserved" or "Cancelled". One'
    " child per order: an inconsistent order may see all its bookings rejected.\n\nOnly"
    " accounts validated by the team can book. The week shown is the model week: it"
    " stands for the whole year.",
}


def demo_schedule(now: datetime, requests: bool = False) -> dict[str, object]:
    """Waiting room open now, draw in two minutes, closes in three hours. ``requests``:
    P'tit Victor's conditions (orders, then an allocation)."""
    schedule = _city_schedule(now)
    if requests:
        schedule["conditions"] = REQUESTS_CONDITIONS
    return schedule


def _city_schedule(now: datetime) -> dict[str, object]:
    return {
        "waiting_room_opens_at": now.isoformat(),
        "opens_at": (now + timedelta(minutes=2)).isoformat(),
        "closes_at": (now + timedelta(hours=3)).isoformat(),
        "timezone": "America/Toronto",
        "admit_per_minute": 30,
        "max_active": 50,
        "heartbeat_timeout_s": 60,
        "help": {
            "phone": "418 839-2002",
            "hours_fr": "le premier soir de 19 h à 21 h, ensuite aux heures de bureau",
            "hours_en": "the first evening from 7 to 9 p.m., then during office hours",
        },
        "conditions": {
            "fr": "Le paiement complet est exigé à l'inscription, par carte Visa ou"
            " Mastercard.\n\nUne inscription peut être annulée auprès du service des loisirs;"
            " les frais sont remboursés selon la politique de la Ville.\n\nLa fiche santé"
            " de chaque enfant inscrit au camp de jour doit être remplie avant le début du"
            " camp.",
            "en": "Full payment is due at registration, by Visa or Mastercard.\n\nA"
            " registration can be cancelled with the recreation department; fees are"
            " refunded under the City's policy.\n\nThe health form of each child registered"
            " for day camp must be filled in before camp begins.",
        },
    }


@dataclass
class LocalStack:
    """Every process of a stack on this machine: Redis (unless ``WAITROOM_REDIS_URL`` names
    one), a local SMTP server keeping emails in ``run_dir/mail``, the queue service, the
    payment adapter, the cart service and ``gateways`` gateway processes on one port.
    ``make run`` and the load drill both start theirs through this."""

    run_dir: Path
    env: dict[str, str]
    gateways: int = 1
    log_dir: Path | None = None  # None: the children write to this terminal
    # Cart-service processes; more than one needs PostgreSQL (WAITROOM_DATABASE_URL).
    cart_replicas: int = 1
    # A second queue service standing by to take the lead (make run has one).
    queue_standby: bool = False
    # Restart a process that dies (make run); False: report it (the drill stops).
    heal: bool = False
    supervisor: Supervisor = field(default_factory=Supervisor)
    redis_server: RedisServer | None = None

    @property
    def base(self) -> str:
        return f"http://{self.env['WAITROOM_HTTP_HOST']}:{self.env['WAITROOM_HTTP_PORT']}"

    @property
    def admin_base(self) -> str:
        """The gateways' operator listener: the operator API and /metrics."""
        return f"http://{self.env['WAITROOM_ADMIN_HOST']}:{self.env['WAITROOM_ADMIN_PORT']}"

    def start(self) -> None:
        env = self.env
        env.setdefault("WAITROOM_HTTP_HOST", "127.0.0.1")
        env.setdefault("WAITROOM_HTTP_PORT", "8080")
        env.setdefault("WAITROOM_ADMIN_HOST", "127.0.0.1")
        env.setdefault("WAITROOM_ADMIN_PORT", "8081")
        if not env.get("WAITROOM_REDIS_URL"):
            self.redis_server = RedisServer(self.run_dir / "redis")
            self.redis_server.start()
            env["WAITROOM_REDIS_URL"] = self.redis_server.url
        db = self.run_dir / "ledger.sqlite3"
        env.setdefault("WAITROOM_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
        if env["WAITROOM_DATABASE_URL"].startswith("sqlite"):
            payments_db = self.run_dir / "payments.sqlite3"
            env.setdefault("WAITROOM_PAYMENT_DATABASE_URL", f"sqlite+aiosqlite:///{payments_db}")
        smtp = f"{env.setdefault('WAITROOM_SMTP_HOST', '127.0.0.1')}:"
        smtp += env.setdefault("WAITROOM_SMTP_PORT", "8025")
        mailbox = ("-c", "aiosmtpd.handlers.Mailbox", str(self.run_dir / "mail"))
        replicas = self._cart_replicas()
        # The SMTP sink is a dev tool (the `local` extra): without it, the confirmation
        # emails wait in the outbox, retried, and the stack runs all the same.
        sink = importlib.util.find_spec("aiosmtpd") is not None
        if not sink:
            print("no SMTP sink (pip install 'waitroom[local]'): emails stay queued", flush=True)
        commands = [
            *([("smtp", [sys.executable, "-m", "aiosmtpd", "-n", "-l", smtp, *mailbox])] * sink),
            *((module, [sys.executable, "-m", module]) for module in SERVICES),
            *((name, [sys.executable, "-m", "cart_service"]) for name in replicas),
            *((f"gateway-{i}", [sys.executable, "-m", "gateway"]) for i in range(self.gateways)),
        ]
        envs = {**replicas, **self._queue_standby()}
        if "queue_service-standby" in envs:
            commands.append(("queue_service-standby", [sys.executable, "-m", "queue_service"]))
        # Gateway processes share their two ports: each writes its metrics here and any of them
        # answers /metrics with the totals of all (prometheus_client's multiprocess mode).
        metrics_dir = self.run_dir / "gateway-metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        gateway_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir.resolve())}
        self.supervisor.restart = self.heal
        for name, command in commands:
            log = None if self.log_dir is None else self.log_dir / f"{name}.log"
            child_env = gateway_env if name.startswith("gateway") else envs.get(name, env)
            self.supervisor.add(Child(name, command, child_env, log))

    def _queue_standby(self) -> dict[str, dict[str, str]]:
        """The standby queue service's environment (its own ports and instance name)."""
        if not self.queue_standby:
            return {}
        env = self.env
        metrics = "0" if env.get("WAITROOM_QUEUE_METRICS_PORT") == "0" else str(free_port())
        standby = {
            **env,
            "WAITROOM_INSTANCE": "standby",
            "WAITROOM_QUEUE_GRPC_PORT": str(free_port()),
            "WAITROOM_QUEUE_METRICS_PORT": metrics,
        }
        return {"queue_service-standby": standby}

    def _cart_replicas(self) -> dict[str, dict[str, str]]:
        """The environment of each cart-service process, by name: the first on the
        configured ports, the others on free ones, each process on
        ``WAITROOM_CART_GRPC_LISTENERS`` ports in a row; the gateways call them all
        (``WAITROOM_CART_TARGET`` lists every address)."""
        env = self.env
        if self.cart_replicas > 1 and not env["WAITROOM_DATABASE_URL"].startswith("postgresql"):
            raise ValueError("several cart-service replicas need PostgreSQL (one SQLite writer)")
        host = env.setdefault("WAITROOM_GRPC_HOST", "127.0.0.1")
        listeners = int(env.setdefault("WAITROOM_CART_GRPC_LISTENERS", str(CART_LISTENERS)))
        if "WAITROOM_CART_GRPC_PORT" not in env:
            # Several listeners: a row of free ports (50053, after 50052, is the adapter's).
            first = free_ports_in_a_row(listeners) if listeners > 1 else 50052
            env["WAITROOM_CART_GRPC_PORT"] = str(first)
        first_port = env["WAITROOM_CART_GRPC_PORT"]
        metrics = env.setdefault("WAITROOM_CART_METRICS_PORT", "9102")
        others = (free_ports_in_a_row(listeners) for _ in range(self.cart_replicas - 1))
        ports = [first_port, *(str(port) for port in others)]
        metric_ports = [metrics, *(str(free_port() if metrics != "0" else 0) for _ in ports[1:])]
        env["WAITROOM_CART_TARGET"] = ",".join(
            f"{host}:{int(port) + i}" for port in ports for i in range(listeners)
        )
        names = ["cart_service"] + [f"cart_service-{i}" for i in range(1, len(ports))]
        return {
            name: {**env, "WAITROOM_CART_GRPC_PORT": port, "WAITROOM_CART_METRICS_PORT": mport}
            for name, port, mport in zip(names, ports, metric_ports, strict=True)
        }

    def wait_ready(
        self, stopping: Callable[[], bool] = lambda: False, timeout_s: float = 90
    ) -> bool:
        """Until the gateway is ready (Redis fresh, a queue leader); False if a service
        exited (and is not healed), ``stopping()`` turned true, or the time ran out."""
        deadline = time.monotonic() + timeout_s
        while not stopping() and time.monotonic() < deadline:
            if http_request("GET", self.base + "/readyz")[0] == 200:
                return True
            self.check()
            if not self.alive():
                return False
            time.sleep(0.2)
        return False

    def check(self) -> None:
        """Heal what died (when ``heal``): a process, or the Redis this stack started."""
        self.supervisor.check()
        server = self.redis_server
        process = None if server is None else server.process
        if not self.heal or server is None or process is None or process.poll() is None:
            return
        print(f"supervisor: redis exited (code {process.returncode}); restarting", flush=True)
        try:
            server.start()  # the same port and data: its append-only file
        except RuntimeError as exc:  # tried again at the next check
            print(f"supervisor: redis did not start again: {exc}", flush=True)
        else:
            print("supervisor: redis restarted", flush=True)

    def alive(self) -> bool:
        return self.supervisor.alive()

    def stop(self) -> None:
        self.supervisor.stop()
        if self.redis_server is not None:
            self.redis_server.stop()


def _start_demos(base: str, admin: str, env: dict[str, str]) -> None:
    """The two demo events: the city's night (first come, first served) and P'tit
    Victor's (orders "En attente", then an allocation), each with its catalogue."""
    now = datetime.now(UTC).replace(microsecond=0)
    token = env["WAITROOM_ADMIN_TOKEN"]
    for wanted, extra, what in (
        (DEMO_EVENT, (), "first come, first served"),
        (REQUESTS_DEMO_EVENT, ("--requests",), "orders, then an allocation"),
    ):
        url = f"{admin}/admin/v1/events/"
        schedule = demo_schedule(now, requests=bool(extra))
        status, body = http_request("PUT", url + wanted, token, schedule)
        event_id = wanted
        if status == 422:  # the demo of an earlier run has drawn: start a new one
            event_id = f"{wanted}-{int(now.timestamp())}"
            status, body = http_request("PUT", url + event_id, token, schedule)
        if status not in (200, 201):
            print(f"demo event not created: {status} {body.decode(errors='replace')}")
            continue
        _load_demo_catalogue(env["WAITROOM_DATABASE_URL"], event_id, *extra)
        print(f"demo event ({what}): {base}/api/v1/events/{event_id} (draw in 2 minutes)")
        print(f"waiting room page: {base}/events/{event_id}/  (receipts: {base}/receipts/)")
        if extra:
            print(f"its allocation: POST {admin}/admin/v1/events/{event_id}/allocation")


def run_stack(gateways: int = 1, demo: bool = True) -> int:
    RUN_DIR.mkdir(exist_ok=True)
    env = {**os.environ, **_secrets_env(RUN_DIR)}
    if not os.environ.get("WAITROOM_STAFF_FILE"):  # else the operator's own accounts
        env.update(_staff_env(RUN_DIR))
    for name in ("WAITROOM_ADMIN_TOKEN",):
        if os.environ.get(name):
            env[name] = os.environ[name]
    stack = LocalStack(RUN_DIR, env, gateways, queue_standby=True, heal=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    parent = os.getppid()
    try:
        stack.start()
        if stack.redis_server is not None:
            print(f"redis: {stack.redis_server.url} (data in {RUN_DIR / 'redis'})", flush=True)
        smtp = f"{env['WAITROOM_SMTP_HOST']}:{env['WAITROOM_SMTP_PORT']}"
        print(f"emails: {RUN_DIR / 'mail'} (Maildir, SMTP on {smtp})", flush=True)
        base, admin = stack.base, stack.admin_base
        if not stack.wait_ready(lambda: stopping) and not stopping:
            print("a service exited during start-up; see its log above", file=sys.stderr)
            return 1
        if demo and not stopping:
            _start_demos(base, admin, env)
        if not stopping:
            print(f"admin token: {env['WAITROOM_ADMIN_TOKEN']}")
            print(f"admin: {admin}", flush=True)
            secret = RUN_DIR / "staff-password"
            own = not os.environ.get("WAITROOM_STAFF_FILE") and secret.exists()
            login = f" (admin / {secret.read_text('utf-8').strip()})" if own else ""
            print(f"staff console: {admin}/console/{login}", flush=True)
            print(f"ready: {base}", flush=True)
        # Also stop when whoever started us (make) is gone: a SIGTERM to make is not passed on.
        while not stopping and os.getppid() == parent:
            stack.check()  # a process that died is started again, Redis included
            time.sleep(0.2)
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0
