"""Faults on purpose during a drill (``python -m loadtests.drill --faults FILE``).

A schedule is a TOML file of ``[[fault]]`` tables, each at a time after the draw::

    [[fault]]
    at_s = 10            # seconds after the draw
    kill = "queue_leader" # SIGKILL: queue_leader, a process's name, or "redis"

Names are the stack's processes: ``queue_leader`` (whichever queue service holds the
lease then), ``queue_service``, ``queue_service-standby``, ``cart_service``,
``cart_service-1``..., ``payment_adapter``, ``gateway-0``..., and ``redis`` (the stack's
own Redis). The stack heals (``LocalStack(heal=True)``): each killed process is started
again by the supervisor, and the report says when it came back.

Today the drill runs on one host: the network faults of the fault drill (a gateway's
link down, loss and latency toward the provider) and a PostgreSQL restart need the
stack spread over network namespaces (``waitroom.netns``) and are not built yet.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtests.report import Sample
from waitroom import keys
from waitroom.devstack import LocalStack

DEFAULT_SCHEDULE = Path(__file__).resolve().parent / "faults.toml"
CAME_BACK_WITHIN_S = 30.0


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(ge=0, le=3600)
    kill: str = Field(min_length=1, max_length=64)


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
    """What happened to one fault: when it struck, what it hit, when the victim was back."""

    spec: FaultSpec
    at: float = 0.0  # wall clock
    target: str = ""
    pid: int = 0
    error: str = ""
    back_after_s: float | None = None

    @property
    def line(self) -> str:
        if self.error:
            return f"+{self.spec.at_s:.0f} s: kill {self.spec.kill}: NOT injected ({self.error})"
        back = (
            f"back after {self.back_after_s:.1f} s" if self.back_after_s is not None else "NOT back"
        )
        return f"+{self.spec.at_s:.0f} s: SIGKILL {self.target} (pid {self.pid}); {back}"


class FaultRunner:
    """Strikes each fault at its time after ``opens_at`` and keeps the stack healing, on
    a thread of its own (the drill's main thread waits for Locust)."""

    def __init__(
        self, stack: LocalStack, schedule: list[FaultSpec], opens_at: float, log: Path
    ) -> None:
        self.stack, self.schedule, self.opens_at, self.log = stack, schedule, opens_at, log
        self.injected: list[Injected] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        pending = list(self.schedule)
        watching: list[Injected] = []
        while not self._done.is_set():
            self.stack.check()  # the supervisor restarts what died (heal=True)
            now = time.time()
            while pending and now >= self.opens_at + pending[0].at_s:
                fault = self._strike(pending.pop(0))
                self.injected.append(fault)
                self._write(fault)
                if not fault.error:
                    watching.append(fault)
            for fault in list(watching):
                if self._back(fault.target):
                    fault.back_after_s = time.time() - fault.at
                    watching.remove(fault)
                    self._write(fault)
            self._done.wait(0.1)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)

    def _strike(self, spec: FaultSpec) -> Injected:
        fault = Injected(spec, at=time.time())
        try:
            fault.target = self._resolve(spec.kill)
            fault.pid = self._pid(fault.target)
            os.kill(fault.pid, signal.SIGKILL)
        except (LookupError, OSError, redis.RedisError) as exc:
            fault.error = str(exc) or type(exc).__name__
        return fault

    def _resolve(self, name: str) -> str:
        if name != "queue_leader":
            return name
        url = self.stack.env["WAITROOM_REDIS_URL"]
        client = redis.Redis.from_url(url, socket_timeout=2, decode_responses=True)
        try:
            held = client.get(keys.LEADER)
        finally:
            client.close()
        if held is None:
            raise LookupError("no queue service holds the lease")
        instance = str(held).split(":", 1)[1]
        return "queue_service-standby" if instance == "standby" else "queue_service"

    def _pid(self, target: str) -> int:
        if target == "redis":
            server = self.stack.redis_server
            if server is None or server.process is None or server.process.poll() is not None:
                raise LookupError("the stack's Redis is not running")
            return int(server.process.pid)
        for child in self.stack.supervisor.children:
            if child.name == target and child.process is not None and child.running():
                return int(child.process.pid)
        raise LookupError(f"no running process named {target!r}")

    def _back(self, target: str) -> bool:
        try:
            return self._pid(target) not in {f.pid for f in self.injected}
        except LookupError:
            return False

    def _write(self, fault: Injected) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime())
        with self.log.open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {fault.line}\n")
        print(f"faults: {fault.line}", flush=True)


def fault_checks(injected: list[Injected]) -> list[tuple[str, bool, str]]:
    """The report's verdicts on the faults themselves."""
    struck = [f for f in injected if not f.error]
    back = [
        f for f in struck if f.back_after_s is not None and f.back_after_s <= CAME_BACK_WITHIN_S
    ]
    return [
        (
            "every scheduled fault was injected",
            bool(injected) and len(struck) == len(injected),
            f"{len(struck)} of {len(injected)}"
            + "".join(f"; {f.line}" for f in injected if f.error),
        ),
        (
            f"every killed process came back within {CAME_BACK_WITHIN_S:.0f} s",
            bool(struck) and len(back) == len(struck),
            ", ".join(
                f"{f.target} {f.back_after_s:.1f} s"
                if f.back_after_s is not None
                else f"{f.target} NOT back"
                for f in struck
            )
            or "nothing was killed",
        ),
    ]


def outflow_resumed(
    injected: list[Injected], samples: list[Sample], max_active: int, within_s: float = 10.0
) -> tuple[str, bool, str]:
    """After each fault, admissions went on within ``within_s`` wherever someone was
    waiting with room at the door (the operator's stats, sampled each second)."""
    found = []
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
