"""A short opening-night drill (200 parents, about a minute): every check of its report
passes, the report and Locust's CSVs are written, and no process is left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_a_short_drill_passes_its_checks_and_stops_by_itself(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.drill", "--parents", "200", "--draw-in", "15",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    checks = json.loads((out / "checks.json").read_text("utf-8"))
    failed = [c for c in checks if not c["ok"]]
    assert result.returncode == 0 and not failed, (failed, result.stdout[-2000:])
    assert len(checks) >= 9
    report = (out / "report.md").read_text("utf-8")
    assert "| seats sold never above capacity | PASS |" in report
    for name in ("chart.png", "locust_stats.csv", "locust_failures.csv", "locust.log"):
        assert (out / name).stat().st_size > 0, name
    assert _processes_mentioning(str(out)) == []
