"""``make drill``: a time-compressed opening night on this machine, headless, with a report.

Starts a whole stack on free ports (``waitroom.devstack.LocalStack``) with a drill
catalogue and one family per parent, opens a waiting room now with the draw
``--draw-in`` seconds later, lets Locust bring ``--parents`` parents in over that time
(``loadtests/locustfile.py``), waits until every parent's night is over (or ``--max-s``),
stops everything, and writes ``report.md``, ``chart.png`` and Locust's CSVs to ``--out``.
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cart_service.catalogue import load_catalogue
from cart_service.families import normalize_phone
from cart_service.ledger import activities, carts, registrations
from loadtests.faults import (
    DEFAULT_SCHEDULE,
    BadSchedule,
    FaultRunner,
    FaultSpec,
    calm_failures,
    error_budget,
    fault_checks,
    fault_windows,
    kept_their_place,
    load_schedule,
    outflow_resumed,
    positions_never_rose,
    slow_requests,
)
from loadtests.hoststack import HostStack, available
from loadtests.report import SLOW_S, WEEKS, Plan, Report, Sample
from payment_adapter.store import payments
from waitroom import audit
from waitroom.db import create_database, drop_database, make_engine, reading
from waitroom.devstack import LocalStack, http_request, private_env
from waitroom.keys import EventKeys
from waitroom.redis_conn import make_redis
from waitroom.redis_server import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
EVENT = "drill"


def _family_phone(n: int) -> str:
    """The principal phone of drill family ``n``, as the locustfile types it."""
    return f"418 55{n // 10000 % 10}-{n % 10000:04d}"


def _e164(n: int) -> str:
    return normalize_phone(_family_phone(n))


async def _prepare_ledger(url: str, plan: Plan) -> list[str]:
    ids = [f"drill-w{w + 1}" for w in range(WEEKS)]
    first = date(2027, 6, 28)
    event = {
        "id": EVENT, "title": "Drill", "currency": "CAD", "timezone": "America/Toronto",
        "payment_deferred": False,
    }  # fmt: skip
    weeks = [
        {
            "id": ids[w], "event_id": EVENT, "kind": "day_camp",
            "title": f"Camp de jour — semaine {w + 1}", "park": "Parc du drill",
            "age_group": "7-8 ans", "starts_on": first + timedelta(weeks=w),
            "ends_on": first + timedelta(weeks=w, days=4), "price_cents": 12_500,
            "capacity": plan.capacity, "min_age": 7, "max_age": 8,
            "class_min": None, "class_max": None, "childcare": True,
        }
        for w in range(WEEKS)
    ]  # fmt: skip
    households = [
        (
            {"client_number": f"D{n:06d}", "principal_phone": _e164(n)},
            [
                {"id": f"DA{n:06d}", "client_number": f"D{n:06d}", "first_name": "Parent",
                 "last_name": str(n), "birth_date": date(1985, 1, 1),
                 "relationship": "responsible", "class_level": None},
                {"id": f"DC{n:06d}", "client_number": f"D{n:06d}", "first_name": "Enfant",
                 "last_name": str(n), "birth_date": date(2019, 3, 1),
                 "relationship": "child", "class_level": 2},
            ],
        )
        for n in range(plan.parents)
    ]  # fmt: skip
    engine = make_engine(url)
    try:
        await load_catalogue(engine, event, weeks, households)
        return ids
    finally:
        await engine.dispose()


def _env(plan: Plan, run_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        **private_env(),  # the cart service's ports (a row per process): the stack picks them
        "WAITROOM_DATABASE_URL": f"sqlite+aiosqlite:///{run_dir / 'ledger.sqlite3'}",
        "WAITROOM_PAYMENT_DATABASE_URL": f"sqlite+aiosqlite:///{run_dir / 'payments.sqlite3'}",
        # Every parent comes from 127.0.0.1: the per-address join limit would stop them.
        "WAITROOM_JOIN_LIMIT": "1000000",
        # A compressed night: pages poll every 2 s instead of 5.
        "WAITROOM_POLL_AFTER_MS": "2000",
        "WAITROOM_SANDBOX_LATENCY_MS": "100",
        "WAITROOM_SETTLE_INTERVAL_S": "1",
    }


def _schedule(plan: Plan) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "waiting_room_opens_at": (now - timedelta(seconds=1)).isoformat(),
        "opens_at": (now + timedelta(seconds=plan.draw_in_s)).isoformat(),
        "closes_at": (now + timedelta(hours=3)).isoformat(),
        "admit_per_minute": plan.admit_per_minute,
        "max_active": plan.max_active,
        "heartbeat_timeout_s": plan.heartbeat_timeout_s,
        "prequeue_order": "random",
    }


class StatsSampler(threading.Thread):
    """The operator's stats, once a second while the drill runs: how many waited and
    how many were admitted and active at each moment (the outflow check reads them).
    Each answer is kept whole in ``stats.jsonl``, with the local time it was read: the
    basis of the ETA at each moment, to explain the ETA checks afterwards."""

    def __init__(self, url: str, token: str, keep: Path) -> None:
        super().__init__(daemon=True)
        self._url, self._token, self._keep = url, token, keep
        self._finished = threading.Event()
        self.samples: list[Sample] = []

    def run(self) -> None:
        while not self._finished.wait(1.0):
            status, body = http_request("GET", self._url, self._token)
            if status != 200:
                continue
            read_at = time.time()  # one reading: the kept line and the sample agree
            stats = json.loads(body)
            with self._keep.open("a", encoding="utf-8") as kept:
                kept.write(json.dumps({"read_at": read_at, **stats}) + "\n")
            counts = stats["counts"]
            self.samples.append(
                Sample(read_at, counts["waiting"], counts["admitted"], stats["admitted_total"])
            )

    def stop(self) -> None:
        self._finished.set()
        self.join(5)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"drill stopped by signal {signum}")  # unwinds: the stack is stopped


def run(plan: Plan) -> int:
    try:  # a bad schedule is refused before anything starts
        schedule = load_schedule(plan.faults) if plan.faults is not None else []
    except BadSchedule as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 2
    if schedule and (why := available()) is not None:
        print(f"drill: the fault drill spreads the stack over hosts: {why}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    for old in [
        *out.glob("parents-*.jsonl"),
        *out.glob("requests-*.json"),
        *out.glob("slow-*.json"),
        out / "stats.jsonl",
    ]:
        old.unlink(missing_ok=True)
    run_dir = out / "stack"
    for old_dir in (run_dir, out / "logs"):  # a night of its own: no earlier run's data
        shutil.rmtree(old_dir, ignore_errors=True)
    env = _env(plan, run_dir)
    if plan.faults is not None:
        # A cart a crash left locked is settled within seconds, before the drill ends.
        env.update(WAITROOM_PAYMENT_LOCK_S="10", WAITROOM_SETTLE_INTERVAL_S="1")
        # The sandbox provider gives up a charge at the adapter's timeout (10 s) and never
        # completes it later: its own deadline, past which "no record" means declined.
        env.update(WAITROOM_PROVIDER_DEADLINE_S="20")
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan.database and not schedule:  # a database of the drill's own, dropped at the end
        ledger = asyncio.run(create_database(plan.database, "waitroom_drill"))
        env["WAITROOM_DATABASE_URL"] = env["WAITROOM_PAYMENT_DATABASE_URL"] = ledger
        print(f"drill: ledger in {ledger}", flush=True)
    try:
        return _run(plan, env, run_dir, schedule)
    finally:
        if plan.database and not schedule:
            asyncio.run(drop_database(plan.database, env["WAITROOM_DATABASE_URL"]))


def _run(plan: Plan, env: dict[str, str], run_dir: Path, schedule: list[FaultSpec]) -> int:
    out = plan.out
    # With faults, the stack spread over hosts, healing (loadtests/hoststack.py).
    stack: HostStack | LocalStack = (
        HostStack(run_dir, env, out / "logs")
        if schedule
        else LocalStack(
            run_dir, env, plan.gateways, log_dir=out / "logs", cart_replicas=plan.cart_replicas
        )
    )
    runner: FaultRunner | None = None
    started = time.monotonic()
    try:
        if isinstance(stack, HostStack):
            print(f"drill: {len(stack.hosts.names)} hosts, PostgreSQL, a Redis Cluster", flush=True)
            stack.prepare()
        print(f"drill: preparing {plan.parents} families and {WEEKS} weeks", flush=True)
        weeks = asyncio.run(_prepare_ledger(env["WAITROOM_DATABASE_URL"], plan))
        stack.start()
        if not stack.wait_ready():
            print("drill: the stack did not start; see logs/", file=sys.stderr)
            return 2
        status, body = http_request(
            "PUT", f"{stack.admin_base}/admin/v1/events/{EVENT}", env["WAITROOM_ADMIN_TOKEN"],
            _schedule(plan),
        )  # fmt: skip
        if status != 201:
            print(f"drill: event not created: {status} {body!r}", file=sys.stderr)
            return 2
        opens_at = time.time() + plan.draw_in_s
        print(f"drill: waiting room open, draw in {plan.draw_in_s} s; locust starts", flush=True)
        locust_env = {
            **os.environ,
            "DRILL_EVENT": EVENT,
            "DRILL_OUT": str(out),
            "DRILL_PARENTS": str(plan.parents),
            "DRILL_ACTIVITIES": ",".join(weeks),
            "DRILL_SLEEP_SHARE": str(plan.sleep_share),
            "DRILL_SLEEP_S": str(plan.heartbeat_timeout_s + 10),
            "DRILL_DECLINE_SHARE": str(plan.decline_share),
            "DRILL_SLOW_MS": str(SLOW_S * 1000),
        }
        # Arrivals over the minute before the draw, and a sixth of them after it (late
        # arrivals, served FIFO behind the drawn pre-queue).
        spawn_rate = max(1.0, plan.parents / (plan.draw_in_s * 1.2))
        sampler = StatsSampler(
            f"{stack.admin_base}/admin/v1/events/{EVENT}/stats",
            env["WAITROOM_ADMIN_TOKEN"],
            out / "stats.jsonl",
        )
        sampler.start()
        if schedule:
            (out / "faults.log").unlink(missing_ok=True)
            assert isinstance(stack, HostStack)
            runner = FaultRunner(stack, schedule, opens_at, out / "faults.log", EVENT)
            runner.start()
        argv = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
            "--headless", "-u", str(plan.parents), "-r", f"{spawn_rate:.2f}",
            "--run-time", f"{plan.max_s}s", "--stop-timeout", "5",
            "--host", stack.base, "--csv", str(out / "locust"), "--only-summary",
            "--loglevel", "WARNING", "--exit-code-on-error", "0",
        ]  # fmt: skip
        if isinstance(stack, HostStack):  # the parents reach only the load balancer
            argv = stack.command_on("locust", argv)
        locust = subprocess.run(
            argv,
            env=locust_env, cwd=ROOT, stdout=(out / "locust.log").open("w"),
            stderr=subprocess.STDOUT, check=False, preexec_fn=die_with_parent,
        )  # fmt: skip
        sampler.stop()
        print(f"drill: locust done in {time.monotonic() - started:.0f} s", flush=True)
        if runner is not None:  # carts a crash left locked: settled, the stack still healing
            asyncio.run(_settled(env["WAITROOM_DATABASE_URL"], timeout_s=60))
        cluster = env.get("WAITROOM_REDIS_CLUSTER") == "true"
        record = asyncio.run(_audit(env["WAITROOM_REDIS_URL"], cluster))
        seats = asyncio.run(_seats(env["WAITROOM_DATABASE_URL"]))
        money = asyncio.run(
            _payments_agree(env["WAITROOM_DATABASE_URL"], env["WAITROOM_PAYMENT_DATABASE_URL"])
        )
        parents = _parents(out)
        sessions = asyncio.run(_paid_sessions_ended(env["WAITROOM_REDIS_URL"], cluster, parents))
        drops = stack.listen_drops() if isinstance(stack, HostStack) else {}
    finally:
        if runner is not None:
            runner.stop()
        stack.stop()
    injected = runner.injected if runner is not None else []
    seconds = _seconds(out)
    fault_verdicts = (
        [
            *fault_checks(injected),
            outflow_resumed(injected, sampler.samples, plan.max_active),
            error_budget(injected, seconds),
            calm_failures(injected, seconds),
        ]
        if schedule
        else []
    )
    report = Report(
        plan, opens_at, record, seats, parents, _locust_stats(out), locust.returncode,
        sampler.samples,
        extra_checks=[
            *money, sessions, positions_never_rose(parents),
            kept_their_place(parents, plan.heartbeat_timeout_s), *fault_verdicts,
        ],
        faults_log=[fault.line for fault in injected],
        fault_marks=[(f.at, f.target or f.spec.what) for f in injected if not f.error],
        fault_spans=[(start, end) for _, start, end in fault_windows(injected)],
        seconds=seconds,
        slow_lines=slow_requests(injected, _slow(out), opens_at),
        listen_drops=drops,
    )  # fmt: skip
    verdict = report.write()
    print(f"drill: report in {out / 'report.md'}: {'PASS' if verdict else 'FAIL'}", flush=True)
    return 0 if verdict else 1


async def _audit(redis_url: str, cluster: bool) -> audit.DrawRecord:
    redis = make_redis(redis_url, cluster=cluster)
    try:
        return await audit.load_record(redis, EVENT)
    finally:
        await redis.aclose()


async def _seats(url: str) -> list[tuple[str, int, int]]:
    engine = make_engine(url)
    try:
        async with reading(engine) as conn:  # no write lock: the stack may still be writing
            rows = await conn.execute(select(activities.c.id, activities.c.capacity))
            capacity = dict(rows.all())
            sold = dict(
                (
                    await conn.execute(
                        select(registrations.c.activity_id, func.count()).group_by(
                            registrations.c.activity_id
                        )
                    )
                ).all()
            )
        return [(a, int(sold.get(a, 0)), int(c)) for a, c in sorted(capacity.items())]
    finally:
        await engine.dispose()


async def _settled(url: str, timeout_s: float) -> None:
    """Until no cart is locked for a payment (or the time runs out: the check says so)."""
    engine = make_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            async with reading(engine) as conn:
                paying = (
                    await conn.execute(select(func.count()).where(carts.c.status == "paying"))
                ).scalar_one()
            if not paying:
                return
            await asyncio.sleep(1)
    finally:
        await engine.dispose()


async def _payments_agree(ledger_url: str, payments_url: str) -> list[tuple[str, bool, str]]:
    """No payment lost (the carts approved by the provider are exactly the paid carts),
    and none charged twice."""
    ledger, adapter = make_engine(ledger_url), make_engine(payments_url)
    try:
        async with reading(ledger) as conn:
            rows = (await conn.execute(select(carts.c.id, carts.c.status))).all()
        async with reading(adapter) as conn:
            charges = list(
                (
                    await conn.execute(
                        select(payments.c.cart_id).where(payments.c.status == "approved")
                    )
                ).scalars()
            )
    finally:
        await ledger.dispose()
        await adapter.dispose()
    approved = set(charges)
    twice = len(charges) - len(approved)
    paid = {cart_id for cart_id, status in rows if status == "paid"}
    paying = sum(status == "paying" for _, status in rows)
    charged_not_paid, paid_not_charged = approved - paid, paid - approved
    return [
        (
            "no payment lost (every approved charge's cart is paid, every paid cart was "
            "charged, none left locked)",
            not charged_not_paid and not paid_not_charged and not paying,
            f"{len(approved)} approved, {len(paid)} paid carts; charged but not paid: "
            f"{len(charged_not_paid)}; paid but not charged: {len(paid_not_charged)}; "
            f"still locked: {paying}",
        ),
        ("no cart charged twice", twice == 0, f"{twice} carts with a second approved charge"),
    ]


async def _paid_sessions_ended(
    redis_url: str, cluster: bool, parents: list[dict[str, Any]]
) -> tuple[str, bool, str]:
    """Every parent who paid left the door: no paid session still holds a slot."""
    paid = [p["arrival"] for p in parents if p.get("outcome") == "paid" and p.get("arrival")]
    redis = make_redis(redis_url, cluster=cluster)
    try:
        scores = await redis.zmscore(EventKeys(EVENT).active, [str(a) for a in paid])
        now_ms = int(time.time() * 1000)
    finally:
        await redis.aclose()
    holding = [
        a for a, score in zip(paid, scores or [], strict=False)
        if score is not None and score > now_ms
    ]  # fmt: skip
    return (
        "every session that paid ended (payments settled in the background too)",
        bool(paid) and not holding,
        f"{len(paid)} paid; {len(holding)} still holding a slot"
        + (f" (arrivals {', '.join(map(str, holding[:10]))})" if holding else ""),
    )


def _parents(out: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(out.glob("parents-*.jsonl")):
        found += [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return found


def _seconds(out: Path) -> dict[int, list[int]]:
    """The parents' requests per second, summed over Locust's processes."""
    total: dict[int, list[int]] = {}
    for path in out.glob("requests-*.json"):
        for second, counts in json.loads(path.read_text("utf-8")).items():
            mine = total.setdefault(int(second), [0] * len(counts))
            total[int(second)] = [a + b for a, b in zip(mine, counts, strict=True)]
    return total


def _slow(out: Path) -> list[list[Any]]:
    """The parents' slow requests, from every Locust process (loadtests/locustfile.py)."""
    found: list[list[Any]] = []
    for path in out.glob("slow-*.json"):
        found += json.loads(path.read_text("utf-8"))
    return found


def _locust_stats(out: Path) -> list[dict[str, str]]:
    path = out / "locust_stats.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.drill", description=__doc__)
    parser.add_argument("--parents", type=int, default=1000)
    parser.add_argument("--draw-in", type=int, default=60, help="seconds to the draw")
    parser.add_argument("--rate", type=int, default=600, help="admit_per_minute")
    parser.add_argument("--max-active", type=int, default=100)
    parser.add_argument("--heartbeat-timeout", type=int, default=15)
    parser.add_argument("--sleep-share", type=float, default=0.05)
    parser.add_argument("--decline-share", type=float, default=0.2)
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument(
        "--cart-replicas", type=int, default=1, help="cart-service processes (PostgreSQL)"
    )
    parser.add_argument(
        "--database",
        default="",
        help="a PostgreSQL URL (postgresql+asyncpg://...): the drill makes a database of its "
        "own on that server and drops it at the end; default: SQLite files",
    )
    parser.add_argument("--max-s", type=int, default=0, help="hard stop (default: computed)")
    parser.add_argument(
        "--faults", type=Path, nargs="?", const=DEFAULT_SCHEDULE, default=None,
        help="inject the faults of this schedule (default: loadtests/faults.toml) on the "
        "stack spread over hosts (network namespaces, root): a load balancer, two gateway "
        "hosts, two queue services, two cart replicas, a Redis Cluster, PostgreSQL",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "drill-report")
    args = parser.parse_args(argv)
    drain_s = math.ceil(args.parents / args.rate * 60)
    plan = Plan(
        parents=args.parents,
        draw_in_s=args.draw_in,
        admit_per_minute=args.rate,
        max_active=args.max_active,
        heartbeat_timeout_s=args.heartbeat_timeout,
        sleep_share=args.sleep_share,
        decline_share=args.decline_share,
        gateways=2 if args.faults else args.gateways,  # the hosts' layout
        cart_replicas=2 if args.faults else args.cart_replicas,
        database=args.database,
        max_s=args.max_s or args.draw_in + drain_s * 3 + 300,
        out=args.out.resolve(),
        faults=args.faults.resolve() if args.faults else None,
    )
    return run(plan)


if __name__ == "__main__":
    sys.exit(main())
