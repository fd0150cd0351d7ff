"""Short opening-night drills (200 parents, under two minutes each): every check of the
report passes, the report and Locust's CSVs are written, no process is left running; once
on SQLite with one cart process, once on PostgreSQL with two cart replicas sharing the
calls. The outflow is slow enough (150/min) that the last parents wait over a minute, so
the ETA's relative error is judged."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import postgres_server

ROOT = Path(__file__).resolve().parent.parent


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


SHORT = ["--parents", "200", "--draw-in", "15", "--rate", "150", "--max-active", "50"]


def _drill(out: Path, *extra: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.drill", *SHORT, "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    checks: list[dict[str, object]] = json.loads((out / "checks.json").read_text("utf-8"))
    failed = [c for c in checks if not c["ok"]]
    assert result.returncode == 0 and not failed, (failed, result.stdout[-2000:])
    assert len(checks) >= 11
    return checks


@pytest.mark.timeout(300)  # a drill of 200 parents lasts ~100 s by its schedule
def test_two_cart_replicas_on_postgresql_share_the_night(tmp_path: Path) -> None:
    out = tmp_path / "drill-pg"
    _drill(out, "--cart-replicas", "2", "--database", postgres_server())
    logs = [out / "logs" / "cart_service.log", out / "logs" / "cart_service-1.log"]
    served = [int(re.findall(r"after serving (\d+) calls", log.read_text())[-1]) for log in logs]
    assert min(served) > 0.3 * sum(served), served  # round robin: each took a fair share
    assert _processes_mentioning(str(out)) == []


@pytest.mark.timeout(300)
def test_a_short_drill_passes_its_checks_and_stops_by_itself(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    _drill(out)
    report = (out / "report.md").read_text("utf-8")
    assert "| seats sold never above capacity | PASS |" in report
    for name in ("chart.png", "locust_stats.csv", "locust_failures.csv", "locust.log"):
        assert (out / name).stat().st_size > 0, name
    assert _processes_mentioning(str(out)) == []


@pytest.mark.timeout(300)
def test_a_short_drill_with_faults_loses_nothing(tmp_path: Path) -> None:
    """The default fault schedule (the queue leader, the cart service, Redis, the payment
    adapter and a gateway killed in turn): every fault struck and healed, admissions went
    on within 10 s of each, and nothing was lost: tickets, seats, payments, sessions.

    One calm-night check is left out of the assertion, not out of the report: "outflow
    kept up" judges every 20 s window at 95 % of the rate, and killing the queue leader
    stops admissions until the standby takes the lease (its 3 s TTL); the fault verdict
    "the outflow resumed within 10 s" judges that instead. The report keeps its verdict."""
    out = tmp_path / "drill-faults"
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.drill", *SHORT, "--out", str(out), "--faults"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    checks = {c["check"]: c for c in json.loads((out / "checks.json").read_text("utf-8"))}
    kept_up = next(name for name in checks if name.startswith("outflow kept up"))
    failed = [c for name, c in checks.items() if not c["ok"] and name != kept_up]
    assert not failed, (failed, result.stdout[-2000:])
    for name in (
        "no payment lost (every approved charge's cart is paid, every paid cart was charged, "
        "none left locked)",
        "no cart charged twice",
        "every session that paid ended (payments settled in the background too)",
        "every scheduled fault was injected",
        "every killed process came back within 30 s",
        "the outflow resumed within 10 s of each fault",
    ):
        assert checks[name]["ok"], checks[name]
    report = (out / "report.md").read_text("utf-8")
    assert report.count("SIGKILL") == 5 and "## Faults (faults.toml)" in report
    assert _processes_mentioning(str(out)) == []


def test_a_bad_fault_schedule_is_refused_before_anything_starts(tmp_path: Path) -> None:
    schedule = tmp_path / "faults.toml"
    schedule.write_text('[[fault]]\nat_s = -1\nkill = "redis"\nwhen = "now"\n')
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.drill", *SHORT, "--out", str(tmp_path / "d"),
         "--faults", str(schedule)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "fault.0.at_s" in result.stderr and "fault.0.when" in result.stderr, result.stderr
    assert not (tmp_path / "d" / "stack").exists()
