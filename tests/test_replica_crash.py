"""A cart-service replica killed with SIGKILL in the middle of a checkout loses nothing:
the gateway tries the checkout again on the other replica under the same idempotency
key, the charge already under way is found again (never made twice), the parent is told
"paid" and the session ends (its slot goes to the next parent)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cart_service.ledger import registrations
from payment_adapter.store import payments, sandbox_charges
from tests.support.parent import (
    ROY,
    TREMBLAY,
    admitted,
    call,
    checkout,
    open_night,
    ready_to_pay,
)
from tests.support.postgres import drop, fresh_database
from waitroom.db import make_engine, reading
from waitroom.devstack import LocalStack, http_request, private_env
from waitroom.redis_server import free_port
from waitroom.supervisor import Child

pytestmark = pytest.mark.timeout(300)
EVENT = "crash"
PROVIDER_LATENCY_MS = 3000  # long enough to kill a replica while the charge is out


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[LocalStack, str]]:
    database = asyncio.run(fresh_database())
    subprocess.run(
        [sys.executable, "-m", "cart_service.demo", "--database", database, "--event", EVENT],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    env = {
        **os.environ,
        **private_env(),
        "WAITROOM_PAYMENT_METRICS_PORT": str(free_port()),
        "WAITROOM_CART_METRICS_PORT": str(free_port()),  # each replica gets one of its own
        "WAITROOM_DATABASE_URL": database,
        "WAITROOM_CART_GRPC_LISTENERS": "1",  # one address per replica: round robin alternates
        "WAITROOM_SANDBOX_LATENCY_MS": str(PROVIDER_LATENCY_MS),
    }
    env.pop("WAITROOM_REDIS_URL", None)  # a Redis of the stack's own
    local = LocalStack(tmp_path, env, gateways=1, log_dir=tmp_path / "logs", cart_replicas=2)
    try:
        local.start()
        assert local.wait_ready(timeout_s=60)
        _wait_replicas_serving(local, timeout_s=60)
        yield local, database
    finally:
        local.stop()
        asyncio.run(drop(database))


def _counts(database: str) -> tuple[int, int, int]:
    """(registrations, approved payments, charges the provider made)."""

    async def count() -> tuple[int, int, int]:
        engine = make_engine(database)
        try:
            async with reading(engine) as conn:
                found = []
                for query in (
                    select(func.count()).select_from(registrations),
                    select(func.count()).where(payments.c.status == "approved"),
                    select(func.count()).select_from(sandbox_charges),
                ):
                    found.append(int((await conn.execute(query)).scalar_one()))
                return found[0], found[1], found[2]
        finally:
            await engine.dispose()

    return asyncio.run(count())


def _wait_replicas_serving(local: LocalStack, timeout_s: float) -> None:
    """Until every cart replica serves its /metrics, which it starts once its gRPC listeners
    are up. The gateway is ready as soon as one replica answers; a replica still starting
    would take no checkout (round robin skips it) and refuse the test's metrics reads."""
    deadline = time.monotonic() + timeout_s
    for replica in (c for c in local.supervisor.children if c.name.startswith("cart_service")):
        port = replica.env["WAITROOM_CART_METRICS_PORT"]
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).close()
                break
            except OSError as exc:
                assert time.monotonic() < deadline, f"{replica.name} not serving: {exc}"
                time.sleep(0.2)


def _charges_received(metrics_port: str) -> int:
    """Charge calls the payment adapter has answered (every attempt counts)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.findall(
        r'waitroom_grpc_server_handling_seconds_count\{method="Charge"[^}]*\} ([\d.]+)', text
    )
    return int(sum(float(n) for n in found))


def test_a_replica_killed_mid_checkout_loses_no_payment_and_no_session(
    stack: tuple[LocalStack, str],
) -> None:
    local, database = stack
    base, admin = local.base, local.env["WAITROOM_ADMIN_TOKEN"]
    event = open_night(opens_in_s=2)
    assert (
        http_request("PUT", f"{local.admin_base}/admin/v1/events/{EVENT}", admin, event)[0] == 201
    )
    api = f"{base}/api/v1/events/{EVENT}"
    parents = [(admitted(api), family) for family in (ROY, TREMBLAY)]
    for (ticket, family), (child, group) in zip(
        parents, (("Léa", "07"), ("Noah", "11")), strict=True
    ):
        ready_to_pay(api, ticket["admission"]["token"], family, child, group)
    replicas = [c for c in local.supervisor.children if c.name.startswith("cart_service")]
    assert len(replicas) == 2
    with ThreadPoolExecutor(2) as pool:
        # Two checkouts at once (round robin usually sends one to each replica).
        paying = [pool.submit(checkout, api, t["admission"]["token"]) for t, _ in parents]
        deadline = time.monotonic() + 10
        while _charges_in_flight(local) < 2:  # both charges are with the provider
            assert time.monotonic() < deadline, "the charges never reached the provider"
            time.sleep(0.05)
        # Kill a replica that is serving a checkout now (the one serving more).
        serving = {c.name: _checkouts_in_flight(c) for c in replicas}
        doomed = max(replicas, key=lambda c: serving[c.name])
        killed_checkouts = serving[doomed.name]
        assert killed_checkouts >= 1 and sum(serving.values()) == 2, serving
        assert doomed.process is not None
        os.kill(doomed.process.pid, signal.SIGKILL)
        answers = [future.result(timeout=60) for future in paying]
    for status, paid in answers:
        assert (status, paid["outcome"]) == (200, "paid"), paid
    # Each checkout of the killed replica was asked again by the other replica, under its
    # key: one more Charge call for each, still two charges made, two payments approved,
    # four weeks registered.
    charges = _charges_received(local.env["WAITROOM_PAYMENT_METRICS_PORT"])
    assert charges == 2 + killed_checkouts
    assert _counts(database) == (4, 2, 2)
    for ticket, _ in parents:  # both sessions ended: their slots went back to the door
        status, polled = call("GET", f"{api}/tickets/{ticket['ticket_id']}")
        assert (status, polled["status"]) == (200, "done"), polled


def _checkouts_in_flight(replica: Child) -> int:
    """Checkout calls a cart-service replica is serving now (its own /metrics)."""
    port = replica.env["WAITROOM_CART_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.search(
        r'^waitroom_grpc_server_in_flight\{method="Checkout",service="[\w.]+"\} ([\d.]+)',
        text,
        re.MULTILINE,
    )
    return int(float(found.group(1))) if found else 0


def _charges_in_flight(local: LocalStack) -> int:
    port = local.env["WAITROOM_PAYMENT_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.search(r"^waitroom_payments_in_flight ([\d.]+)", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0
