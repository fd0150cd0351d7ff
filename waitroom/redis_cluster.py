"""A Redis Cluster on this machine, for tests and drills: six ``redis-server`` processes
on loopback (three masters, three replicas), each with its append-only file, a one-second
node timeout (a replica takes over 2-3 s after its master dies), made into a cluster with
``redis-cli --cluster create``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import redis

from waitroom.redis_server import RedisServer, find_redis_server, free_port, reserve_port

NODE_TIMEOUT_MS = 1000
BUS_OFFSET = 10_000  # a node also listens on its port + 10 000 (the cluster bus)


def free_node_port() -> int:
    """A free port whose cluster-bus port (10 000 higher) is free too, and kept from every
    later ``free_port`` of this process: the nodes of a cluster are all given their ports
    before any starts, so a later node was once handed an earlier node's bus port (CI:
    "bind: Address already in use" at its start)."""
    while True:
        port = free_port()
        bus = port + BUS_OFFSET
        if bus > 65_535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", bus))
            except OSError:
                continue
        if reserve_port(bus):
            return port


def cluster_healthy(nodes: Iterable[tuple[str, int]]) -> bool:
    """Every node of ``nodes`` (host, port) says the cluster is ok, and every replica among
    them has its master's data (a replica that never synced cannot take over)."""
    for host, port in nodes:
        client = redis.Redis(host=host, port=port, socket_timeout=1, decode_responses=True)
        try:
            if client.cluster("info")["cluster_state"] != "ok":
                return False
            info = client.info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()
    return True


class ClusterNode(RedisServer):
    """One node: a RedisServer started with cluster mode on."""

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip


class RedisClusterServer:
    cluster = True

    def __init__(self, data_dir: Path, masters: int = 3, replicas_per_master: int = 1) -> None:
        count = masters * (1 + replicas_per_master)
        self.nodes = [
            ClusterNode(data_dir / f"node-{i}", free_node_port(), fsync="always")
            for i in range(count)
        ]
        self.replicas_per_master = replicas_per_master

    @property
    def url(self) -> str:
        """Any node names the cluster; the client finds the others."""
        return self.nodes[0].url

    def start(self, timeout_s: float = 30.0) -> None:
        cli = shutil.which("redis-cli") or str(Path(find_redis_server()).with_name("redis-cli"))
        for node in self.nodes:
            node.start()
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout_s,
        )  # fmt: skip
        self.wait_healthy(timeout_s)

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until every live node says the cluster is ok and every live replica has its
        master's data (a replica that never synced cannot take over)."""
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become healthy in time")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        return cluster_healthy(("127.0.0.1", n.port) for n in self.nodes if n.process is not None)

    def masters(self) -> list[ClusterNode]:
        found = []
        for node in self.nodes:
            if node.process is None:
                continue
            client = redis.Redis(port=node.port, socket_timeout=1, decode_responses=True)
            try:
                if client.info("replication")["role"] == "master":
                    found.append(node)
            finally:
                client.close()
        return found

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
