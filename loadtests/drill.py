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
import itertools
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cart_service.catalogue import load_catalogue
from cart_service.families import normalize_phone
from cart_service.ledger import activities, registrations
from waitroom import audit
from waitroom.db import create_database, drop_database, make_engine, reading
from waitroom.devstack import LocalStack, http_request
from waitroom.redis_conn import make_redis
from waitroom.redis_server import die_with_parent, free_port
from waitroom.tokens import new_signing_key

ROOT = Path(__file__).resolve().parent.parent
EVENT = "drill"
WEEKS = 6


@dataclass(frozen=True)
class Plan:
    parents: int
    draw_in_s: int
    admit_per_minute: int
    max_active: int
    heartbeat_timeout_s: int
    sleep_share: float
    decline_share: float
    gateways: int
    cart_replicas: int
    database: str  # "" (SQLite files of the drill's own) or a PostgreSQL server URL
    max_s: int
    out: Path

    @property
    def capacity(self) -> int:
        """Seats per week: fewer in all than parents want (two weeks each), so some fill."""
        return max(5, math.ceil(self.parents * 1.5 / WEEKS))


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
    signing = new_signing_key()
    return {
        **os.environ,
        "WAITROOM_HTTP_HOST": "127.0.0.1",
        "WAITROOM_HTTP_PORT": str(free_port()),
        "WAITROOM_QUEUE_GRPC_PORT": str(free_port()),
        "WAITROOM_CART_GRPC_PORT": (cart := str(free_port())),
        "WAITROOM_PAYMENT_GRPC_PORT": (payment := str(free_port())),
        "WAITROOM_CART_TARGET": f"127.0.0.1:{cart}",
        "WAITROOM_PAYMENT_TARGET": f"127.0.0.1:{payment}",
        "WAITROOM_QUEUE_METRICS_PORT": "0",
        "WAITROOM_CART_METRICS_PORT": "0",
        "WAITROOM_PAYMENT_METRICS_PORT": "0",
        "WAITROOM_SMTP_PORT": str(free_port()),
        "WAITROOM_DATABASE_URL": f"sqlite+aiosqlite:///{run_dir / 'ledger.sqlite3'}",
        "WAITROOM_PAYMENT_DATABASE_URL": f"sqlite+aiosqlite:///{run_dir / 'payments.sqlite3'}",
        "WAITROOM_TICKET_SECRET": secrets.token_urlsafe(32),
        "WAITROOM_TOKEN_SIGNING_KEY": signing,
        "WAITROOM_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "WAITROOM_SERVICE_TOKEN": secrets.token_urlsafe(24),
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


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"drill stopped by signal {signum}")  # unwinds: the stack is stopped


def run(plan: Plan) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("parents-*.jsonl"):
        old.unlink()
    run_dir = out / "stack"
    env = _env(plan, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan.database:  # a database of the drill's own on that server, dropped at the end
        ledger = asyncio.run(create_database(plan.database, "waitroom_drill"))
        env["WAITROOM_DATABASE_URL"] = env["WAITROOM_PAYMENT_DATABASE_URL"] = ledger
        print(f"drill: ledger in {ledger}", flush=True)
    try:
        return _run(plan, env, run_dir)
    finally:
        if plan.database:
            asyncio.run(drop_database(plan.database, env["WAITROOM_DATABASE_URL"]))


def _run(plan: Plan, env: dict[str, str], run_dir: Path) -> int:
    out = plan.out
    print(f"drill: preparing {plan.parents} families and {WEEKS} weeks", flush=True)
    weeks = asyncio.run(_prepare_ledger(env["WAITROOM_DATABASE_URL"], plan))
    stack = LocalStack(
        run_dir, env, plan.gateways, log_dir=out / "logs", cart_replicas=plan.cart_replicas
    )
    started = time.monotonic()
    try:
        stack.start()
        if not stack.wait_ready():
            print("drill: the stack did not start; see logs/", file=sys.stderr)
            return 2
        status, body = http_request(
            "PUT", f"{stack.base}/admin/v1/events/{EVENT}", env["WAITROOM_ADMIN_TOKEN"],
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
        }
        # Arrivals over the minute before the draw, and a sixth of them after it (late
        # arrivals, served FIFO behind the drawn pre-queue).
        spawn_rate = max(1.0, plan.parents / (plan.draw_in_s * 1.2))
        locust = subprocess.run(
            [
                sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
                "--headless", "-u", str(plan.parents), "-r", f"{spawn_rate:.2f}",
                "--run-time", f"{plan.max_s}s", "--stop-timeout", "5",
                "--host", stack.base, "--csv", str(out / "locust"), "--only-summary",
                "--loglevel", "WARNING", "--exit-code-on-error", "0",
            ],
            env=locust_env, cwd=ROOT, stdout=(out / "locust.log").open("w"),
            stderr=subprocess.STDOUT, check=False, preexec_fn=die_with_parent,
        )  # fmt: skip
        print(f"drill: locust done in {time.monotonic() - started:.0f} s", flush=True)
        record = asyncio.run(_audit(env["WAITROOM_REDIS_URL"]))
        seats = asyncio.run(_seats(env["WAITROOM_DATABASE_URL"]))
    finally:
        stack.stop()
    parents = _parents(out)
    report = Report(plan, opens_at, record, seats, parents, _locust_stats(out), locust.returncode)
    verdict = report.write()
    print(f"drill: report in {out / 'report.md'}: {'PASS' if verdict else 'FAIL'}", flush=True)
    return 0 if verdict else 1


async def _audit(redis_url: str) -> audit.DrawRecord:
    redis = make_redis(redis_url)
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


def _parents(out: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(out.glob("parents-*.jsonl")):
        found += [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return found


def _locust_stats(out: Path) -> list[dict[str, str]]:
    path = out / "locust_stats.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (no ties here: arrivals and lines are distinct)."""
    n = len(xs)
    if n < 3:
        return 0.0
    rank_x = {v: i for i, v in enumerate(sorted(xs))}
    rank_y = {v: i for i, v in enumerate(sorted(ys))}
    d2 = sum((rank_x[x] - rank_y[y]) ** 2 for x, y in zip(xs, ys, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


@dataclass
class Report:
    plan: Plan
    opens_at: float
    record: audit.DrawRecord
    seats: list[tuple[str, int, int]]
    parents: list[dict[str, Any]]
    stats: list[dict[str, str]]
    locust_status: int

    def checks(self) -> list[tuple[str, bool, str]]:
        plan, record = self.plan, self.record
        results: list[tuple[str, bool, str]] = []

        def check(name: str, ok: bool, detail: str) -> None:
            results.append((name, ok, detail))

        verdict = audit.verify(record)
        problems = "; ".join(verdict.problems[:3])
        check(
            "the draw recomputes from its revealed seed (verify-draw)",
            verdict.ok,
            f"{verdict.lines_checked} lines checked {problems}",
        )
        # Each ticket's own line (a requeued ticket's later line is not its draw or FIFO line).
        requeued = set(record.requeue_lines)
        line_of = {a: line for line, a, _ in record.served if line not in requeued}
        pre = [(a, line_of[a]) for a in range(1, record.prequeue + 1) if a in line_of]
        rho = spearman([float(a) for a, _ in pre], [float(b) for _, b in pre])
        bound = 4 / math.sqrt(max(1, len(pre) - 1))
        check(
            "the draw does not follow arrival order (Spearman |rho| < 4/sqrt(n-1))",
            len(pre) >= 20 and abs(rho) < bound,
            f"rho = {rho:+.3f} over {len(pre)} pre-queue tickets, bound {bound:.3f}",
        )
        late = [(a, line) for a, line in line_of.items() if a > record.prequeue]
        first_time = [line for line, _, _ in record.served if line not in requeued]
        check(
            "FIFO after the draw (late arrivals keep arrival order; lines served in order)",
            all(line == a for a, line in late)
            and all(x < y for x, y in itertools.pairwise(first_time)),
            f"{len(late)} late arrivals; {len(first_time)} lines served in order",
        )
        admitted = sorted(p["admitted_at"] for p in self.parents if "admitted_at" in p)
        busiest = self._busiest_window(admitted, 10)
        limit = plan.admit_per_minute / 6 + plan.admit_per_minute / 60 + 1
        check(
            "admitted never faster than configured (any 10 s: rate/6 + 1 s burst)",
            busiest <= limit,
            f"busiest 10 s: {busiest} admitted; limit {limit:.0f}",
        )
        oversold = [(a, sold, cap) for a, sold, cap in self.seats if sold > cap]
        sold = sum(s for _, s, _ in self.seats)
        capacity = sum(c for *_, c in self.seats)
        check(
            "seats sold never above capacity",
            not oversold,
            f"{sold} sold of {capacity}; oversold: {oversold or 'none'}",
        )
        total = [r for r in self.stats if r["Name"] == "Aggregated"]
        failures = sum(int(r["Failure Count"]) for r in total)
        requests = sum(int(r["Request Count"]) for r in total)
        check(
            "no failed request (5xx, unexpected status)",
            failures == 0 and requests > 0,
            f"{failures} failures of {requests} requests",
        )
        ended = [p for p in self.parents if "outcome" in p]  # not cut off by --max-s
        check(
            "every parent's night ended before the drill stopped by itself",
            len(ended) == plan.parents,
            f"{len(ended)} of {plan.parents} parents",
        )
        errors = self.eta_errors()
        p90 = percentile([abs(e) for e in errors], 0.9)
        check(
            "ETA error within 5 minutes for 9 tickets in 10",
            bool(errors) and p90 <= 300,
            f"{len(errors)} tickets; |error| p90 {p90:.0f} s",
        )
        sleepers = [p for p in self.parents if p.get("slept")]
        back = [p for p in sleepers if p.get("requeued")]
        check(
            "parents who slept were requeued or kept their place, never dropped",
            all(p.get("outcome") != "done" for p in sleepers),
            f"{len(sleepers)} slept, {len(back)} came back requeued",
        )
        return results

    def eta_errors(self) -> list[float]:
        return [
            p["admitted_at"] - p["predicted_at"]
            for p in self.parents
            if "admitted_at" in p and p.get("predicted_at") and not p.get("requeued")
        ]

    @staticmethod
    def _busiest_window(times: list[float], width_s: float) -> int:
        busiest, start = 0, 0
        for end, t in enumerate(times):
            while times[start] <= t - width_s:
                start += 1
            busiest = max(busiest, end - start + 1)
        return busiest

    def write(self) -> bool:
        checks = self.checks()
        self._chart()
        plan = self.plan
        errors = self.eta_errors()
        outcomes: dict[str, int] = {}
        for p in self.parents:
            outcomes[str(p.get("outcome", "?"))] = outcomes.get(str(p.get("outcome", "?")), 0) + 1
        lines = [
            "# Opening-night drill",
            "",
            f"{plan.parents} parents arriving over {plan.draw_in_s} s before the draw; outflow "
            f"{plan.admit_per_minute}/min, max_active {plan.max_active}, heartbeat timeout "
            f"{plan.heartbeat_timeout_s} s, {plan.sleep_share:.0%} fall asleep, "
            f"{plan.decline_share:.0%} have a card declined first; {plan.gateways} gateway "
            f"process(es); {WEEKS} weeks of {plan.capacity} places.",
            "",
            "## Checks",
            "",
            "| check | verdict | detail |",
            "| --- | --- | --- |",
            *(f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |" for name, ok, detail in checks),
            "",
            "![admitted per 10 s, and ETA error](chart.png)",
            "",
            "## Requests (Locust; CSVs beside this file)",
            "",
            "| endpoint | requests | failures | median ms | p95 ms | p99 ms | max ms |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *(
                f"| {r['Type']} {r['Name']} | {r['Request Count']} | {r['Failure Count']} | "
                f"{r['50%']} | {r['95%']} | {r['99%']} | {float(r['Max Response Time']):.0f} |"
                for r in self.stats
            ),
            "",
            "## ETA error (actual admission - predicted when first in line)",
            "",
            f"{len(errors)} tickets (requeued ones excluded): p10 {percentile(errors, 0.1):.1f} s, "
            f"p50 {percentile(errors, 0.5):.1f} s, p90 {percentile(errors, 0.9):.1f} s.",
            "",
            "## Outcomes",
            "",
            *(f"- {name}: {count}" for name, count in sorted(outcomes.items())),
            "",
            "## Seats",
            "",
            "| activity | sold | capacity |",
            "| --- | --- | --- |",
            *(f"| {a} | {s} | {c} |" for a, s, c in self.seats),
            "",
        ]
        (plan.out / "report.md").write_text("\n".join(lines), encoding="utf-8")
        (plan.out / "checks.json").write_text(
            json.dumps([{"check": n, "ok": ok, "detail": d} for n, ok, d in checks], indent=2),
            encoding="utf-8",
        )
        return all(ok for _, ok, _ in checks)

    def _chart(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        admitted = sorted(
            p["admitted_at"] - self.opens_at for p in self.parents if "admitted_at" in p
        )
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        if admitted:
            bins = [i * 10 for i in range(int(max(admitted) // 10) + 2)]
            left.hist(admitted, bins=bins, color="#0b5394", label="admitted per 10 s")
            left.axhline(self.plan.admit_per_minute / 6, color="#e69500", linestyle="--",
                         label="configured per 10 s")  # fmt: skip
        left.set_xlabel("seconds after the draw")
        left.set_title("Outflow")
        left.legend()
        errors = self.eta_errors()
        if errors:
            right.hist(errors, bins=30, color="#6aa84f")
        right.set_xlabel("actual - predicted admission (s)")
        right.set_title("ETA error")
        fig.tight_layout()
        fig.savefig(self.plan.out / "chart.png", dpi=100)
        plt.close(fig)


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
        gateways=args.gateways,
        cart_replicas=args.cart_replicas,
        database=args.database,
        max_s=args.max_s or args.draw_in + drain_s * 3 + 300,
        out=args.out.resolve(),
    )
    return run(plan)


if __name__ == "__main__":
    sys.exit(main())
