"""Faults on purpose during a drill (``python -m loadtests.drill --faults FILE``).

A schedule is a TOML file of ``[[fault]]`` tables, each at a time after the draw and with
one action::

    [[fault]]
    at_s = 10                # seconds after the draw
    kill = "queue_leader"    # SIGKILL a process (the supervisor starts it again)

    [[fault]]
    at_s = 30
    link_down = "gw-a"       # a host off the network for for_s seconds
    for_s = 30

    [[fault]]
    at_s = 60
    slow = "payments"        # latency and loss toward the payment provider for for_s
    delay_ms = 1500
    loss = 0.1
    for_s = 60

    [[fault]]
    at_s = 90
    restart = "postgres"     # an immediate shutdown; started again by the supervisor

Processes to kill: ``queue_leader`` (whichever queue service holds the lease then),
``redis_master`` (the master serving the drill event's keys), ``cart_service``,
``cart_service-1``, ``payment_adapter``, ``gateway-0``, ``gateway-1``, ``haproxy``, or a
Redis node by ``host:port``. Hosts (``link_down``): ``gw-a``, ``gw-b``, ``svc``, ``pay``,
``queue-a``, ``queue-b``, ``redis-a``... (``loadtests/hoststack.py``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loadtests.hoststack import HostStack
from loadtests.report import Sample
from waitroom.settings import Settings

DEFAULT_SCHEDULE = Path(__file__).resolve().parent / "faults.toml"
CAME_BACK_WITHIN_S = 30.0


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(ge=0, le=3600)
    kill: str | None = Field(None, min_length=1, max_length=64)
    link_down: str | None = Field(None, min_length=1, max_length=64)
    slow: Literal["payments"] | None = None
    restart: Literal["postgres"] | None = None
    for_s: float = Field(30, gt=0, le=600)  # link_down and slow: how long
    delay_ms: int = Field(1500, ge=0, le=60_000)  # slow: added each way
    loss: float = Field(0.1, ge=0, le=0.9)  # slow: share of packets dropped

    @model_validator(mode="after")
    def _one_action(self) -> FaultSpec:
        actions = [a for a in (self.kill, self.link_down, self.slow, self.restart) if a]
        if len(actions) != 1:
            raise ValueError("each fault has exactly one of kill, link_down, slow, restart")
        return self

    @property
    def lasts(self) -> bool:
        """A fault lifted after for_s (a link, a slow path), not healed by a restart."""
        return bool(self.link_down or self.slow)

    @property
    def what(self) -> str:
        if self.kill:
            return f"kill {self.kill}"
        if self.link_down:
            return f"link down {self.link_down} for {self.for_s:.0f} s"
        if self.slow:
            return f"{self.slow}: +{self.delay_ms} ms, {self.loss:.0%} loss for {self.for_s:.0f} s"
        return f"restart {self.restart}"


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fault: list[FaultSpec] = Field(min_length=1)


class BadSchedule(ValueError):
    """The schedule file cannot be read or is not a schedule; the message says why."""


def load_schedule(path: Path) -> list[FaultSpec]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return sorted(Schedule.model_validate(raw).fault, key=lambda f: f.at_s)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadSchedule(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise BadSchedule(f"{path}: {problems}") from None


@dataclass
class Injected:
    """What happened to one fault: when it struck, what it hit, when it was over (the
    victim back, or the link or path restored)."""

    spec: FaultSpec
    at: float = 0.0  # wall clock
    target: str = ""
    pid: int = 0
    error: str = ""
    back_after_s: float | None = None

    @property
    def line(self) -> str:
        if self.error:
            return f"+{self.spec.at_s:.0f} s: {self.spec.what}: NOT injected ({self.error})"
        back = (
            f"back after {self.back_after_s:.1f} s" if self.back_after_s is not None else "NOT back"
        )
        if self.pid:
            return f"+{self.spec.at_s:.0f} s: {self.how} {self.target} (pid {self.pid}); {back}"
        return f"+{self.spec.at_s:.0f} s: {self.spec.what}; {back}"

    @property
    def how(self) -> str:
        return "SIGQUIT (immediate shutdown)" if self.spec.restart else "SIGKILL"


class FaultRunner:
    """Strikes each fault at its time after ``opens_at``, lifts the lasting ones after
    their ``for_s``, and keeps the stack healing, on a thread of its own (the drill's main
    thread waits for Locust)."""

    def __init__(
        self, stack: HostStack, schedule: list[FaultSpec], opens_at: float, log: Path, event: str
    ) -> None:
        self.stack, self.schedule, self.opens_at, self.log = stack, schedule, opens_at, log
        self.event = event
        self.injected: list[Injected] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        pending = list(self.schedule)
        watching: list[Injected] = []
        while not self._done.is_set():
            self.stack.check()  # the supervisor restarts what died
            now = time.time()
            while pending and now >= self.opens_at + pending[0].at_s:
                fault = self._strike(pending.pop(0))
                self.injected.append(fault)
                self._write(fault)
                if not fault.error:
                    watching.append(fault)
            for fault in list(watching):
                if self._over(fault, now):
                    fault.back_after_s = time.time() - fault.at
                    watching.remove(fault)
                    self._write(fault)
            self._done.wait(0.1)
        for fault in watching:  # the drill ended first: lift what still holds
            self._lift(fault.spec)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)

    def _strike(self, spec: FaultSpec) -> Injected:
        fault = Injected(spec, at=time.time())
        stack = self.stack
        try:
            if spec.kill:
                fault.target = stack.resolve(spec.kill, self.event)
                fault.pid = stack.pid_of(fault.target)
                os.kill(fault.pid, signal.SIGKILL)
            elif spec.restart:
                fault.target = spec.restart
                fault.pid = stack.restart_postgres()
            elif spec.link_down:
                fault.target = spec.link_down
                stack.link(spec.link_down, up=False)
            elif spec.slow:
                fault.target = spec.slow
                stack.slow_payments(spec.delay_ms, spec.loss)
        except (LookupError, OSError, redis.RedisError, KeyError) as exc:
            fault.error = str(exc) or type(exc).__name__
        return fault

    def _lift(self, spec: FaultSpec) -> None:
        if spec.link_down:
            self.stack.link(spec.link_down, up=True)
        elif spec.slow:
            self.stack.slow_payments(0, 0.0)

    def _over(self, fault: Injected, now: float) -> bool:
        if fault.spec.lasts:
            if now < fault.at + fault.spec.for_s:
                return False
            self._lift(fault.spec)
            return True
        try:
            back = self.stack.pid_of(fault.target) not in {f.pid for f in self.injected}
        except LookupError:
            return False
        return back and (not fault.spec.restart or self.stack.pg_ready())

    def _write(self, fault: Injected) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime())
        with self.log.open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {fault.line}\n")
        print(f"faults: {fault.line}", flush=True)


def _healed_in_time(fault: Injected) -> bool:
    if fault.back_after_s is None:
        return False
    limit = fault.spec.for_s + 5 if fault.spec.lasts else CAME_BACK_WITHIN_S
    return fault.back_after_s <= limit


def fault_checks(injected: list[Injected]) -> list[tuple[str, bool, str]]:
    """The report's verdicts on the faults themselves."""
    struck = [f for f in injected if not f.error]
    return [
        (
            "every scheduled fault was injected",
            bool(injected) and len(struck) == len(injected),
            f"{len(struck)} of {len(injected)}"
            + "".join(f"; {f.line}" for f in injected if f.error),
        ),
        (
            f"every fault was over in time (a killed process back within "
            f"{CAME_BACK_WITHIN_S:.0f} s, a link or path restored when due)",
            bool(struck) and all(_healed_in_time(f) for f in struck),
            ", ".join(
                f"{f.target} {f.back_after_s:.1f} s"
                if f.back_after_s is not None
                else f"{f.target} NOT back"
                for f in struck
            )
            or "nothing was struck",
        ),
    ]


def outflow_resumed(
    injected: list[Injected], samples: list[Sample], max_active: int, within_s: float = 10.0
) -> tuple[str, bool, str]:
    """After each fault, admissions went on within ``within_s`` wherever someone was
    waiting with room at the door (the operator's stats, sampled each second)."""
    found: list[tuple[Injected, float | None, str]] = []
    for fault in (f for f in injected if not f.error):
        after = [s for s in samples if s.at >= fault.at]
        if not after:
            found.append((fault, None, "no sample after it"))
            continue
        first = after[0]
        if first.waiting == 0 or first.active >= max_active:
            found.append((fault, 0.0, "nobody waiting with room"))
            continue
        moved = next((s for s in after if s.admitted_total > first.admitted_total), None)
        delay = None if moved is None else moved.at - fault.at
        found.append((fault, delay, "" if delay is not None else "never resumed"))
    ok = bool(found) and all(d is not None and d <= within_s for _, d, _ in found)
    detail = ", ".join(
        f"{f.target}: {note or f'{d:.1f} s'}" if d is not None else f"{f.target}: {note}"
        for f, d, note in found
    )
    return (f"the outflow resumed within {within_s:.0f} s of each fault", ok, detail)


# The error budget of the parents' requests in each fault's window: at most one in twenty
# answered 5xx, at most one in ten needing a retry (a 5xx, or no connection at all).
BUDGET_5XX = 0.05
BUDGET_RETRIED = 0.10
# The drill's gateways flush heartbeats at the default interval.
HEARTBEAT_FLUSH_S = float(Settings.model_fields["heartbeat_flush_s"].default)
SETTLE_S = 15.0  # a fault's window: from the strike to this long after it was over


def fault_windows(injected: list[Injected]) -> list[tuple[Injected, float, float]]:
    """Each struck fault's window on the wall clock: from the strike to SETTLE_S after
    its victim was back (or its link or path restored; the drill's end if never)."""
    windows = []
    for fault in (f for f in injected if not f.error):
        over = fault.back_after_s if fault.back_after_s is not None else 3600.0
        windows.append((fault, fault.at, fault.at + over + SETTLE_S))
    return windows


def _sum(seconds: dict[int, list[int]], start: float, end: float) -> list[int]:
    total = [0, 0, 0, 0]
    for second, counts in seconds.items():
        if start <= second < end:
            total = [a + b for a, b in zip(total, counts[:4], strict=True)]
    return total


def error_budget(injected: list[Injected], seconds: dict[int, list[int]]) -> tuple[str, bool, str]:
    """Per fault window: the share of the parents' requests answered 5xx and the share
    that needed a retry, against the budget."""
    found = []
    for fault, start, end in fault_windows(injected):
        requests, _, errors, refused = _sum(seconds, start, end)
        share_5xx = errors / requests if requests else 0.0
        share_retried = (errors + refused) / requests if requests else 0.0
        ok = requests > 0 and share_5xx <= BUDGET_5XX and share_retried <= BUDGET_RETRIED
        found.append(
            (ok, f"{fault.target}: {share_5xx:.1%} 5xx, {share_retried:.1%} retried "
                 f"of {requests}")
        )  # fmt: skip
    return (
        f"error budget in each fault window (5xx <= {BUDGET_5XX:.0%}, needing a retry <= "
        f"{BUDGET_RETRIED:.0%} of the parents' requests)",
        bool(found) and all(ok for ok, _ in found),
        "; ".join(detail for _, detail in found) or "no fault struck",
    )


def calm_failures(injected: list[Injected], seconds: dict[int, list[int]]) -> tuple[str, bool, str]:
    """Outside every fault's window, no request failed at all (the calm night's check)."""
    windows = [(start, end) for _, start, end in fault_windows(injected)]
    requests = failed = 0
    for second, counts in seconds.items():
        if any(start <= second < end for start, end in windows):
            continue
        requests += counts[0]
        failed += counts[1]
    return (
        "no failed request outside the fault windows (5xx, unexpected status, no connection)",
        requests > 0 and failed == 0,
        f"{failed} failures of {requests} requests outside the windows",
    )


def slow_requests(injected: list[Injected], slow: list[list[Any]], opens_at: float) -> list[str]:
    """Where the parents' slow requests (``DRILL_SLOW_MS``, by when they were sent) fell:
    in each fault's window, or outside every window. Informational, not a verdict: the
    budget above judges failures; this says which fault the slow ones belong to."""
    windows = fault_windows(injected)
    groups: dict[str, list[list[Any]]] = {}
    for request in slow:
        sent_at = float(request[0])
        where = next(
            (f"{f.target or f.spec.what} window" for f, a, b in windows if a <= sent_at < b),
            "outside the fault windows",
        )
        groups.setdefault(where, []).append(request)
    lines = []
    for where, found in sorted(groups.items(), key=lambda g: min(float(r[0]) for r in g[1])):
        after_draw = [float(r[0]) - opens_at for r in found]
        names = Counter(f"{r[1]} {r[2]}" for r in found)
        statuses = Counter(str(r[3] or "no answer") for r in found)
        lines.append(
            f"{where}: {len(found)}, sent from {min(after_draw):+.0f} s to "
            f"{max(after_draw):+.0f} s after the draw, "
            f"longest {max(int(r[4]) for r in found) / 1000:.1f} s; "
            + ", ".join(f"{n} {c}" for n, c in names.most_common())
            + "; answered "
            + ", ".join(f"{st}: {c}" for st, c in statuses.most_common())
        )
    return lines


def positions_never_rose(parents: list[dict[str, Any]]) -> tuple[str, bool, str]:
    """A polling ticket's position never went up (a requeued one starts a new line)."""
    rose = [p for p in parents if p.get("rose")]
    worst = max((int(p["rose"]) for p in rose), default=0)
    polled = sum(1 for p in parents if p.get("first_position") is not None)
    return (
        "positions never rose for a polling ticket",
        polled > 0 and not rose,
        f"{polled} tickets polled in line; {len(rose)} saw their position rise"
        + (f" (by up to {worst})" if rose else ""),
    )


def kept_their_place(parents: list[dict[str, Any]], timeout_s: int) -> tuple[str, bool, str]:
    """No parent lost their place while the server could hear them. The leader skips a
    ticket silent for more than the timeout plus the grace; a gateway writes a ticket's
    heartbeat at most once per grace and flushes its batch every ``HEARTBEAT_FLUSH_S``,
    so a parent is never skipped after a silence within ``timeout - HEARTBEAT_FLUSH_S``.
    One requeued after such a silence (as the parent measured it, at most what the
    server saw) was taken for gone while it polled. Requeues after a longer silence (a
    sleeper, a poll hanging on a gateway cut off) are counted, not failed."""
    within = timeout_s - HEARTBEAT_FLUSH_S
    requeued = [p for p in parents if "silent_s" in p]
    heard = [p for p in requeued if float(p["silent_s"]) <= within]
    awake = sum(1 for p in requeued if not p.get("slept"))
    return (
        f"no parent requeued while polling (heard from within {within:g} s)",
        not heard,
        f"{len(requeued)} requeued ({awake} of them never slept); {len(heard)} had been "
        f"heard from within {within:g} s"
        + (
            f" (the shortest silence {min(float(p['silent_s']) for p in heard):.1f} s)"
            if heard
            else ""
        ),
    )
