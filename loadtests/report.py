"""The drill's report: its checks with verdicts, the request table, the chart.

Written by ``loadtests.drill`` from what the night left behind: the draw's audit record,
the seats sold, each parent's JSON line, Locust's statistics and the operator's stats
sampled once a second.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waitroom import audit

WEEKS = 6
LONG_WAIT_S = 60  # the ETA's relative error is judged on waits of at least this long
OUTFLOW_WINDOW_S = 20
SAMPLE_GAP_S = 1.5  # samples are a second apart: a longer gap is a second missed
SLOW_S = 5  # the requests the report places in time (the locustfile keeps each one)


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
    faults: Path | None = None  # a fault schedule (loadtests/faults.py), or a calm night

    @property
    def capacity(self) -> int:
        """Seats per week: fewer in all than parents want (two weeks each), so some fill."""
        return max(5, math.ceil(self.parents * 1.5 / WEEKS))


@dataclass(frozen=True, slots=True)
class Sample:
    """The operator's stats at one moment of the drill."""

    at: float
    waiting: int
    active: int
    admitted_total: int


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


def outflow_windows(
    samples: list[Sample],
    opens_at: float,
    admit_per_minute: int,
    max_active: int,
    fault_spans: list[tuple[float, float]],
) -> list[tuple[float, float]]:
    """(admitted / configured, seconds after the draw) for each window of
    ``OUTFLOW_WINDOW_S`` (sliding by 5 s) after the draw in which every sample had people
    waiting and the door below max_active, outside the fault spans.

    A window with a gap in its samples (the operator's stats did not answer, as in a
    Redis failover) says nothing of the door during the gap, and is not judged; the
    windows after it are."""
    after = [s for s in samples if s.at >= opens_at]
    expected = admit_per_minute / 60 * OUTFLOW_WINDOW_S
    found: list[tuple[float, float]] = []
    for i, first in enumerate(after):
        end = first.at + OUTFLOW_WINDOW_S
        if end > after[-1].at + SAMPLE_GAP_S:
            break  # the drill ended inside this window
        inside = [s for s in after[i:] if s.at <= end]
        last = inside[-1]
        if any(b.at - a.at > SAMPLE_GAP_S for a, b in itertools.pairwise(inside)):
            continue
        if last.at - first.at < OUTFLOW_WINDOW_S - SAMPLE_GAP_S:
            continue
        if any(s.waiting == 0 or s.active >= max_active for s in inside):
            continue
        if any(first.at < end_ and start < last.at for start, end_ in fault_spans):
            continue
        if found and first.at - opens_at - found[-1][1] < 5:
            continue
        ratio = (last.admitted_total - first.admitted_total) / expected
        scale = OUTFLOW_WINDOW_S / (last.at - first.at)  # samples are about 1 s apart
        found.append((ratio * scale, first.at - opens_at))
    return found


@dataclass
class Report:
    plan: Plan
    opens_at: float
    record: audit.DrawRecord
    seats: list[tuple[str, int, int]]
    parents: list[dict[str, Any]]
    stats: list[dict[str, str]]
    locust_status: int
    samples: list[Sample]
    # Checks the drill adds (the faults, the payments): (name, ok, detail).
    extra_checks: list[tuple[str, bool, str]] = field(default_factory=list)
    faults_log: list[str] = field(default_factory=list)  # what each fault did, in order
    # With faults: when each struck (wall clock) and its name, marked on the chart; the
    # parents' requests per second ([requests, failures, 5xx, no connection, total ms]).
    fault_marks: list[tuple[float, str]] = field(default_factory=list)
    # With faults: each fault's window (wall clock); the calm night's outflow check is
    # judged outside them ("the outflow resumed" judges them).
    fault_spans: list[tuple[float, float]] = field(default_factory=list)
    seconds: dict[int, list[int]] = field(default_factory=dict)
    # Where the requests slower than the locustfile's SLOW_MS fell (loadtests/faults.py).
    slow_lines: list[str] = field(default_factory=list)
    # Connections each host's kernel dropped on a full listen queue (informational).
    listen_drops: dict[str, int] = field(default_factory=dict)

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
        if plan.faults is None:  # with faults: outside their windows (loadtests/faults.py)
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
        relative = self.relative_eta_errors()
        r50, r90 = percentile(relative, 0.5), percentile(relative, 0.9)
        check(
            "ETA honest for those who waited a minute (relative error p50 <= 10 %, p90 <= 25 %)",
            bool(relative) and r50 <= 0.10 and r90 <= 0.25,
            f"{len(relative)} tickets waited >= {LONG_WAIT_S} s; p50 {r50:.0%}, p90 {r90:.0%}"
            if relative
            else f"no ticket waited {LONG_WAIT_S} s: too short a drill to judge the ETA",
        )
        windows = self.outflow_windows()
        worst = min(windows, default=None)
        outside = " outside the fault windows" if self.fault_spans else ""
        check(
            "outflow kept up (>= 95 % of the configured rate while people waited and the "
            f"door had room){outside}",
            worst is not None and worst[0] >= 0.95,
            f"{len(windows)} windows of {OUTFLOW_WINDOW_S} s; worst {worst[0]:.0%} at "
            f"+{worst[1]:.0f} s after the draw"
            if worst is not None
            else "no window where people waited with the door open: nothing to judge",
        )
        sleepers = [p for p in self.parents if p.get("slept")]
        back = [p for p in sleepers if p.get("requeued")]
        check(
            "parents who slept were requeued or kept their place, never dropped",
            all(p.get("outcome") != "done" for p in sleepers),
            f"{len(sleepers)} slept, {len(back)} came back requeued",
        )
        results.extend(self.extra_checks)
        return results

    def eta_errors(self) -> list[float]:
        return [
            p["admitted_at"] - p["predicted_at"]
            for p in self.parents
            if "admitted_at" in p and p.get("predicted_at") and not p.get("requeued")
        ]

    def relative_eta_errors(self) -> list[float]:
        """|actual - predicted| / actual wait, for the tickets that waited a minute or more
        after their first prediction (requeued ones excluded)."""
        found = []
        for p in self.parents:
            if "admitted_at" not in p or not p.get("predicted_at") or p.get("requeued"):
                continue
            waited = p["admitted_at"] - p.get("predicted_when", p["joined_at"])
            if waited >= LONG_WAIT_S:
                found.append(abs(p["admitted_at"] - p["predicted_at"]) / waited)
        return found

    def outflow_windows(self) -> list[tuple[float, float]]:
        return outflow_windows(
            self.samples,
            self.opens_at,
            self.plan.admit_per_minute,
            self.plan.max_active,
            self.fault_spans,
        )

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
            *self._slow_lines(),
            "## ETA error (actual admission - predicted when first in line)",
            "",
            f"{len(errors)} tickets (requeued ones excluded): p10 {percentile(errors, 0.1):.1f} s, "
            f"p50 {percentile(errors, 0.5):.1f} s, p90 {percentile(errors, 0.9):.1f} s.",
            "",
            *self._relative_lines(),
            "",
            *self._faults_lines(),
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

    def _faults_lines(self) -> list[str]:
        if self.plan.faults is None:
            return []
        return [
            f"## Faults ({self.plan.faults.name})",
            "",
            *(f"- {line}" for line in self.faults_log),
            "",
            *self._listen_lines(),
        ]

    def _listen_lines(self) -> list[str]:
        if not self.listen_drops:
            return []
        counts = ", ".join(f"{host} {n}" for host, n in self.listen_drops.items())
        return [f"Connections dropped on a full listen queue (TcpExtListenOverflows), by host:"
                f" {counts}.", ""]  # fmt: skip

    def _slow_lines(self) -> list[str]:
        if not self.slow_lines:
            return [f"No request took {SLOW_S} s or more.", ""]
        return [f"Requests that took {SLOW_S} s or more, by when they were sent:", "",
                *(f"- {line}" for line in self.slow_lines), ""]  # fmt: skip

    def _relative_lines(self) -> list[str]:
        relative = self.relative_eta_errors()
        if not relative:
            return [f"No ticket waited {LONG_WAIT_S} s or more after its first prediction."]
        return [
            f"Relative error, {len(relative)} tickets that waited {LONG_WAIT_S} s or more: "
            f"p50 {percentile(relative, 0.5):.1%}, p90 {percentile(relative, 0.9):.1%}."
        ]

    def _chart(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        admitted = sorted(
            p["admitted_at"] - self.opens_at for p in self.parents if "admitted_at" in p
        )
        panels = 3 if self.fault_marks else 2
        fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4))
        left, right = axes[0], axes[-1]
        if admitted:
            bins = [i * 10 for i in range(int(max(admitted) // 10) + 2)]
            left.hist(admitted, bins=bins, color="#0b5394", label="admitted per 10 s")
            left.axhline(self.plan.admit_per_minute / 6, color="#e69500", linestyle="--",
                         label="configured per 10 s")  # fmt: skip
        left.set_xlabel("seconds after the draw")
        left.set_title("Outflow")
        if self.fault_marks:
            self._latency_panel(axes[1])
            for ax in axes[:2]:
                for at, name in self.fault_marks:
                    ax.axvline(at - self.opens_at, color="#cc0000", linewidth=1, alpha=0.7)
                    where = ax.get_xaxis_transform()
                    ax.text(at - self.opens_at, 0.98, f" {name}", rotation=90, va="top",
                            fontsize=7, color="#cc0000", transform=where)  # fmt: skip
        left.legend()
        errors = self.eta_errors()
        if errors:
            right.hist(errors, bins=30, color="#6aa84f")
        right.set_xlabel("actual - predicted admission (s)")
        right.set_title("ETA error")
        fig.tight_layout()
        fig.savefig(self.plan.out / "chart.png", dpi=100)
        plt.close(fig)

    def _latency_panel(self, ax: Any) -> None:
        """The parents' requests second by second: mean latency, and the 5xx answers."""
        seconds = sorted(self.seconds)
        xs = [s - self.opens_at for s in seconds]
        mean_ms = [self.seconds[s][4] / max(1, self.seconds[s][0]) for s in seconds]
        ax.plot(xs, mean_ms, color="#0b5394", linewidth=1, label="mean latency (ms)")
        ax.set_xlabel("seconds after the draw")
        ax.set_ylabel("ms")
        ax.set_title("Requests (faults in red)")
        errors = ax.twinx()
        errors.bar(xs, [self.seconds[s][2] for s in seconds], color="#e69500", width=1.0,
                   alpha=0.6, label="5xx per second")  # fmt: skip
        errors.set_ylabel("5xx per second")
        ax.legend(loc="upper left", fontsize=8)
