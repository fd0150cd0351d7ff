"""The stack spread over hosts on this machine, for the fault drill (``make drill-faults``).

Each host is a network namespace on a bridge of its own (``waitroom.netns``)::

    locust ──> lb (HAProxy :8080 public, :8081 operator)
                 ├── gw-a   gateway              ┐
                 └── gw-b   gateway              ├── redis-a/b/c: a Redis Cluster, two
    queue-a  queue service (leader)              │   nodes per host, each master's
    queue-b  queue service (standby)             │   replica on another host
    svc      two cart-service replicas, SMTP ────┤
    pay      payment adapter (its sandbox provider), behind a link that can be made
             slow (``loadtests.slowlink``) and lossy (iptables' statistic match)
    pg       PostgreSQL of its own (initdb in a temporary directory)

Every process runs under one supervisor that starts again what dies (the stack heals).
The drill process, in the machine's own namespace, reaches every host across the
bridge. ``stop()`` removes everything, whatever happened: processes, namespaces, links,
firewall rules, the database's directory. Root only; ``available()`` says what is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from waitroom import keys, netns
from waitroom.db import create_database
from waitroom.redis_cluster import NODE_TIMEOUT_MS, cluster_healthy
from waitroom.redis_server import find_redis_server
from waitroom.supervisor import Child, Supervisor

HOSTS = (
    "lb", "gw-a", "gw-b", "svc", "pay", "queue-a", "queue-b",
    "redis-a", "redis-b", "redis-c", "pg", "locust",
)  # fmt: skip
GATEWAY_HOSTS = ("gw-a", "gw-b")
REDIS_HOSTS = ("redis-a", "redis-b", "redis-c")
REDIS_PORTS = (7001, 7002)
HTTP_PORT, ADMIN_PORT = 8080, 8081
PG_PORT = 5432
CART_PORTS = (50052, 50062)  # one replica each, WAITROOM_CART_GRPC_LISTENERS ports from there
CART_LISTENERS = 4
PAYMENT_PORT, PAYMENT_LINK_PORT, FIELDS_PORT = 50070, 50071, 8090
QUEUE_PORT, SMTP_PORT = 50051, 8025
PG_USER = "postgres"  # Debian's PostgreSQL runs as this account; initdb refuses root


def _postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (the newest installed), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


def available() -> str | None:
    """Why the stack cannot be spread over hosts here, or None when it can."""
    why = netns.available()
    if why is not None:
        return why
    if shutil.which("haproxy") is None:
        return "HAProxy is needed (Debian: apt-get install haproxy)"
    if _postgres_bin() is None:
        return "PostgreSQL's server is needed (Debian: apt-get install postgresql)"
    try:
        import pwd

        pwd.getpwnam(PG_USER)
    except KeyError:
        return f"the {PG_USER!r} account (made by Debian's postgresql package) is needed"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is needed"
    return None


def _answers(url: str, timeout_s: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class HostStack:
    """Start with ``prepare()`` (hosts, PostgreSQL, the Redis Cluster: the drill loads its
    ledger then), then ``start()`` (the services and the load balancer)."""

    heal = True

    def __init__(self, run_dir: Path, env: dict[str, str], log_dir: Path) -> None:
        self.run_dir, self.env, self.log_dir = run_dir, env, log_dir
        self.hosts = netns.Hosts(list(HOSTS))
        self.supervisor = Supervisor(restart=True)
        self._pg_dir: Path | None = None
        self._link_control = run_dir / "payment-link.json"
        self._loss_rule: list[str] | None = None

    # -- addresses ------------------------------------------------------------------------

    def addr(self, host: str) -> str:
        return self.hosts[host].address

    @property
    def base(self) -> str:
        return f"http://{self.addr('lb')}:{HTTP_PORT}"

    @property
    def admin_base(self) -> str:
        return f"http://{self.addr('lb')}:{ADMIN_PORT}"

    def redis_nodes(self) -> list[tuple[str, int]]:
        return [(self.addr(h), p) for p in REDIS_PORTS for h in REDIS_HOSTS]

    # -- start ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Hosts, PostgreSQL and the Redis Cluster; sets the database and Redis URLs."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.hosts.__enter__()
        try:
            self._parents_reach_only_the_load_balancer()
            self._start_postgres()
            self._start_redis_cluster()
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        try:
            self._start_services()
        except BaseException:
            self.stop()
            raise

    def _run(self, name: str, host: str, argv: list[str], env: dict[str, str]) -> Child:
        return self.supervisor.add(
            Child(name, self.hosts[host].command(argv), env, self.log_dir / f"{name}.log")
        )

    def _parents_reach_only_the_load_balancer(self) -> None:
        """The locust host's firewall: every other host of the drill is out of its reach."""
        subnet = self.addr("lb").rsplit(".", 1)[0] + ".0/24"
        for rule in (["-d", self.addr("lb"), "-j", "ACCEPT"], ["-d", subnet, "-j", "REJECT"]):
            subprocess.run(self.hosts["locust"].command(["iptables", "-A", "OUTPUT", *rule]),
                           check=True, capture_output=True)  # fmt: skip

    def _start_postgres(self) -> None:
        bindir = _postgres_bin()
        assert bindir is not None
        self._pg_dir = Path(tempfile.mkdtemp(prefix="waitroom-pg-"))
        shutil.chown(self._pg_dir, PG_USER, PG_USER)
        data = self._pg_dir / "data"
        as_pg = ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups"]
        subprocess.run(
            [*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
             "--no-sync"],
            check=True, capture_output=True, cwd=self._pg_dir,
        )  # fmt: skip
        with (data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.write("host all all 10.0.0.0/8 trust\n")  # the drill's hosts only
        # fsync off: the drill kills processes, not the machine; the OS keeps what was
        # written, and PostgreSQL's crash recovery replays it from the WAL.
        self._run(
            "postgres", "pg",
            [*as_pg, str(bindir / "postgres"), "-D", str(data), "-p", str(PG_PORT),
             "-c", f"listen_addresses={self.addr('pg')}",
             "-c", f"unix_socket_directories={self._pg_dir}", "-c", "fsync=off",
             "-c", "max_connections=200"],
            dict(os.environ),
        )  # fmt: skip
        server = f"postgresql+asyncpg://{PG_USER}@{self.addr('pg')}:{PG_PORT}/postgres"
        self._wait_for(lambda: self._pg_ready(bindir), "PostgreSQL", 30)
        url = asyncio.run(create_database(server, "waitroom"))
        self.env["WAITROOM_DATABASE_URL"] = self.env["WAITROOM_PAYMENT_DATABASE_URL"] = url

    def _pg_ready(self, bindir: Path) -> bool:
        done = subprocess.run(
            [str(bindir / "pg_isready"), "-h", self.addr("pg"), "-p", str(PG_PORT), "-t", "1"],
            capture_output=True, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def pg_ready(self) -> bool:
        bindir = _postgres_bin()
        return bindir is not None and self._pg_ready(bindir)

    def _start_redis_cluster(self) -> None:
        server = find_redis_server()
        for port in REDIS_PORTS:
            for host in REDIS_HOSTS:
                data = (self.run_dir / f"redis-{host}-{port}").resolve()
                data.mkdir(parents=True, exist_ok=True)
                self._run(
                    f"{host}:{port}", host,
                    [server, "--port", str(port), "--bind", self.addr(host),
                     "--protected-mode", "no", "--dir", str(data), "--appendonly", "yes",
                     "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
                     "--logfile", str(data / "redis.log"), "--cluster-enabled", "yes",
                     "--cluster-config-file", str(data / "nodes.conf"),
                     "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                     "--repl-diskless-sync-delay", "0"],
                    dict(os.environ),
                )  # fmt: skip
        nodes = self.redis_nodes()
        self._wait_for(lambda: all(self._ping(h, p) for h, p in nodes), "the Redis nodes", 20)
        cli = str(Path(server).with_name("redis-cli"))
        # The first three listed become masters, one per host; redis-cli puts each
        # replica on another host than its master.
        subprocess.run(
            [cli, "--cluster", "create", *(f"{h}:{p}" for h, p in nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self._wait_for(lambda: cluster_healthy(nodes), "the Redis Cluster", 60)
        self.env["WAITROOM_REDIS_URL"] = f"redis://{nodes[0][0]}:{nodes[0][1]}/0"
        self.env["WAITROOM_REDIS_CLUSTER"] = "true"

    @staticmethod
    def _ping(host: str, port: int) -> bool:
        client = redis.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _start_services(self) -> None:
        env = self.env
        svc, pay = self.addr("svc"), self.addr("pay")
        env.update(
            WAITROOM_CART_TARGET=",".join(
                f"{svc}:{port + i}" for port in CART_PORTS for i in range(CART_LISTENERS)
            ),
            WAITROOM_CART_GRPC_LISTENERS=str(CART_LISTENERS),
            WAITROOM_PAYMENT_TARGET=f"{pay}:{PAYMENT_LINK_PORT}",  # through the slow link
            WAITROOM_SMTP_HOST=svc, WAITROOM_SMTP_PORT=str(SMTP_PORT),
            WAITROOM_SANDBOX_FIELDS_HOST=pay, WAITROOM_SANDBOX_FIELDS_PORT=str(FIELDS_PORT),
            WAITROOM_PAYMENT_FIELDS_URL=f"http://{pay}:{FIELDS_PORT}",
            WAITROOM_QUEUE_METRICS_PORT="0", WAITROOM_CART_METRICS_PORT="0",
            WAITROOM_PAYMENT_METRICS_PORT="0",
        )  # fmt: skip
        py = sys.executable
        for host, instance in (("queue-a", ""), ("queue-b", "standby")):
            name = "queue_service-standby" if instance else "queue_service"
            self._run(name, host, [py, "-m", "queue_service"], {
                **env, "WAITROOM_GRPC_HOST": self.addr(host),
                "WAITROOM_QUEUE_GRPC_PORT": str(QUEUE_PORT), "WAITROOM_INSTANCE": instance,
            })  # fmt: skip
        self._link_control.write_text(json.dumps({"delay_ms": 0}), encoding="utf-8")
        self._run(
            "payment_link", "pay",
            [py, "-m", "loadtests.slowlink", f"{pay}:{PAYMENT_LINK_PORT}",
             f"{pay}:{PAYMENT_PORT}", "--control", str(self._link_control.resolve())],
            env,
        )  # fmt: skip
        self._run("payment_adapter", "pay", [py, "-m", "payment_adapter"], {
            **env, "WAITROOM_GRPC_HOST": pay, "WAITROOM_PAYMENT_GRPC_PORT": str(PAYMENT_PORT),
        })  # fmt: skip
        mail = ("-c", "aiosmtpd.handlers.Mailbox", str((self.run_dir / "mail").resolve()))
        self._run("smtp", "svc", [py, "-m", "aiosmtpd", "-n", "-l", f"{svc}:{SMTP_PORT}", *mail],
                  env)  # fmt: skip
        for i, port in enumerate(CART_PORTS):
            name = "cart_service" if i == 0 else f"cart_service-{i}"
            self._run(name, "svc", [py, "-m", "cart_service"], {
                **env, "WAITROOM_GRPC_HOST": svc, "WAITROOM_CART_GRPC_PORT": str(port),
            })  # fmt: skip
        for i, host in enumerate(GATEWAY_HOSTS):
            metrics = (self.run_dir / f"metrics-{host}").resolve()
            shutil.rmtree(metrics, ignore_errors=True)
            metrics.mkdir(parents=True)
            self._run(f"gateway-{i}", host, [py, "-m", "gateway"], {
                **env, "WAITROOM_HTTP_HOST": self.addr(host),
                "WAITROOM_HTTP_PORT": str(HTTP_PORT), "WAITROOM_ADMIN_HOST": self.addr(host),
                "WAITROOM_ADMIN_PORT": str(ADMIN_PORT), "WAITROOM_TRUST_FORWARDED_FOR": "true",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            })  # fmt: skip
        config = self.run_dir / "haproxy.cfg"
        config.write_text(self._haproxy_config(), encoding="utf-8")
        self._run("haproxy", "lb", ["haproxy", "-db", "-f", str(config.resolve())], env)

    def _haproxy_config(self) -> str:
        """Round robin over the gateways, each checked every second on /readyz; a request
        whose connection fails is sent to the other gateway (nothing reached the first)."""
        lb = self.addr("lb")

        def servers(port: int) -> str:
            return "".join(f"    server {h} {self.addr(h)}:{port} check\n" for h in GATEWAY_HOSTS)

        return (
            "global\n    maxconn 4000\n"
            "defaults\n    mode http\n    timeout connect 1s\n    timeout client 60s\n"
            "    timeout server 15s\n    retries 3\n    option redispatch 1\n"
            "    retry-on conn-failure empty-response\n"
            "    default-server inter 1s fall 2 rise 2\n"
            f"frontend public\n    bind {lb}:{HTTP_PORT}\n    option forwardfor\n"
            "    default_backend gateways\n"
            "backend gateways\n    balance roundrobin\n    option httpchk GET /readyz\n"
            f"{servers(HTTP_PORT)}"
            f"frontend operator\n    bind {lb}:{ADMIN_PORT}\n    default_backend operators\n"
            f"backend operators\n    balance roundrobin\n{servers(ADMIN_PORT)}"
        )

    def wait_ready(self, timeout_s: float = 120) -> bool:
        """Until each gateway is ready (Redis fresh, a queue leader) and the load balancer
        passes both ports on (its health checks need two rounds); False if the time ran
        out."""
        gateways = [f"http://{self.addr(h)}:{HTTP_PORT}/readyz" for h in GATEWAY_HOSTS]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            operator = _answers(self.admin_base + "/metrics")  # through its own frontend
            if (
                all(_answers(u) == 200 for u in gateways)
                and _answers(self.base + "/readyz") == 200
                and operator not in (0, 502, 503, 504)
            ):
                return True
            time.sleep(0.3)
        return False

    @staticmethod
    def _wait_for(ready: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up in {timeout_s:.0f} s")
            time.sleep(0.2)

    def command_on(self, host: str, argv: list[str]) -> list[str]:
        return self.hosts[host].command(argv)

    # -- the faults -----------------------------------------------------------------------

    def check(self) -> None:
        self.supervisor.check()

    def pid_of(self, name: str) -> int:
        for child in self.supervisor.children:
            if child.name == name and child.process is not None and child.running():
                return int(child.process.pid)
        raise LookupError(f"no running process named {name!r}")

    def resolve(self, name: str, event_id: str) -> str:
        """A process's name from a role: ``queue_leader`` (whichever holds the lease now),
        ``redis_master`` (the master serving ``event_id``'s keys); other names as they are."""
        if name == "queue_leader":
            held = self._cluster().get(keys.LEADER)
            if held is None:
                raise LookupError("no queue service holds the lease")
            instance = str(held).split(":", 1)[1]
            return "queue_service-standby" if instance == "standby" else "queue_service"
        if name == "redis_master":
            client = self._cluster()
            slot = client.keyslot(keys.EventKeys(event_id).cfg)  # type: ignore[no-untyped-call]
            node = client.nodes_manager.get_node_from_slot(slot)
            for child_name in (f"{h}:{p}" for h in REDIS_HOSTS for p in REDIS_PORTS):
                host, port = child_name.split(":")
                if (self.addr(host), int(port)) == (node.host, node.port):
                    return child_name
            raise LookupError(f"no Redis node of ours at {node.host}:{node.port}")
        return name

    def _cluster(self) -> redis.RedisCluster:
        host, port = self.redis_nodes()[0]
        return redis.RedisCluster(host=host, port=port, socket_timeout=2, decode_responses=True)

    def restart_postgres(self) -> int:
        """An immediate shutdown (SIGQUIT: no checkpoint, crash recovery at the next
        start); the supervisor starts it again. Returns the old postmaster's pid."""
        pid = self.pid_of("postgres")
        os.kill(pid, signal.SIGQUIT)
        return pid

    def link(self, host: str, up: bool) -> None:
        self.hosts.link(host, up)

    def slow_payments(self, delay_ms: int, loss: float) -> None:
        """Latency (the slow link) and loss (a random share of packets dropped) toward
        the payment adapter and its provider; ``slow_payments(0, 0)`` lifts both."""
        self._link_control.write_text(json.dumps({"delay_ms": delay_ms}), encoding="utf-8")
        pay = self.hosts["pay"]
        if self._loss_rule is not None:
            subprocess.run(pay.command(["iptables", "-D", *self._loss_rule]), check=False,
                           capture_output=True)  # fmt: skip
            self._loss_rule = None
        if loss > 0:
            rule = ["INPUT", "-p", "tcp", "--dport", str(PAYMENT_LINK_PORT), "-m", "statistic",
                    "--mode", "random", "--probability", f"{loss:.3f}", "-j", "DROP"]  # fmt: skip
            subprocess.run(pay.command(["iptables", "-I", *rule]), check=True,
                           capture_output=True)  # fmt: skip
            self._loss_rule = rule

    def listen_drops(self) -> dict[str, int]:
        """Connections the load balancer's and each gateway host's kernel dropped because a
        listen queue was full (each namespace has its own counters): a gateway that drops
        the load balancer's health check is marked down."""
        found = {}
        for host in ("lb", *GATEWAY_HOSTS):
            out = subprocess.run(
                self.command_on(host, ["nstat", "-asz", "TcpExtListenOverflows"]),
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            for line in out.splitlines():
                name, _, rest = line.partition(" ")
                if name == "TcpExtListenOverflows":
                    found[host] = int(rest.split()[0])
        return found

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        try:
            self.supervisor.stop()
        finally:
            self.hosts.remove()  # whatever still runs in a namespace dies with it
            if self._pg_dir is not None:
                shutil.rmtree(self._pg_dir, ignore_errors=True)
                self._pg_dir = None
