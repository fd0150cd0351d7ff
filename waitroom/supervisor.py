"""Child processes kept running: one that dies is started again after a back-off, and the
log says so. What ``make run`` (``waitroom.devstack``) runs its processes under.

The back-off starts at half a second and doubles with each quick death, up to 30 s; a
process that ran for a minute starts afresh. A process that exits while the stack stops
is not restarted.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from waitroom.redis_server import die_with_parent

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # a process up this long has recovered: its next back-off starts afresh


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log: Path | None = None  # None: this terminal
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = 0.0
    restart_at: float | None = None  # when a dead child is due to start again
    restarts: int = 0

    def start(self) -> None:
        out = None
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            out = self.log.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=out, preexec_fn=die_with_parent
            )
        finally:
            if out is not None:
                out.close()  # the child has its own descriptor
        self.started_at = time.monotonic()
        self.restart_at = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Supervisor:
    restart: bool = True  # False: a death is reported (``check`` returns it), not healed
    children: list[Child] = field(default_factory=list)
    say: Callable[..., object] = print

    def add(self, child: Child) -> Child:
        self.children.append(child)
        child.start()
        return child

    def check(self) -> list[Child]:
        """Look at every child once: restart the dead that are due; the newly dead."""
        now = time.monotonic()
        died = []
        for child in self.children:
            if child.running() or child.process is None:
                continue
            if child.restart_at is None:  # just found dead
                died.append(child)
                if not self.restart:
                    continue
                up_s = now - child.started_at
                child.backoff_s = (
                    BACKOFF_FIRST_S
                    if up_s >= STABLE_S or not child.backoff_s
                    else min(BACKOFF_MAX_S, child.backoff_s * 2)
                )
                child.restart_at = now + child.backoff_s
                self._say(
                    f"supervisor: {child.name} exited (code {child.process.returncode}) after"
                    f" {up_s:.1f} s; restarting in {child.backoff_s:.1f} s"
                )
            elif now >= child.restart_at:
                child.restarts += 1
                child.start()
                self._say(f"supervisor: {child.name} restarted (restart {child.restarts})")
        return died

    def alive(self) -> bool:
        """Every child running (or, when restarting, due to run again)."""
        return all(c.running() or (self.restart and c.restart_at) for c in self.children)

    def stop(self, timeout_s: float = 10.0) -> None:
        for child in self.children:
            child.restart_at = None
            if child.running():
                assert child.process is not None
                child.process.terminate()
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def _say(self, line: str) -> None:
        self.say(line, flush=True)
