"""Hosts on this machine (waitroom/netns.py), the ground the fault drill stands on: a
Redis on one host answers another across the bridge, taking a host's link down cuts it
off and putting it up brings it back, and nothing is left behind, processes included."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.support.tools import unavailable
from waitroom import netns
from waitroom.redis_server import find_redis_server


def _ping(hosts: netns.Hosts, client: str, server: str) -> bool:
    cli = str(Path(find_redis_server()).with_name("redis-cli"))
    argv = [cli, "-h", hosts[server].address, "-p", "6390", "ping"]
    try:
        done = subprocess.run(
            hosts[client].command(argv), capture_output=True, text=True, timeout=3, check=False
        )
    except subprocess.TimeoutExpired:  # no route: the connection attempt hangs
        return False
    return done.stdout.strip() == "PONG"


def test_hosts_reach_each_other_and_leave_nothing_behind(tmp_path: Path) -> None:
    why = netns.available()
    if why is not None:
        unavailable(why)
    with netns.Hosts(["redis", "gateway"]) as hosts:
        server = subprocess.Popen(
            hosts["redis"].command([find_redis_server(), "--port", "6390", "--bind",
                                    hosts["redis"].address, "--protected-mode", "no", "--save", "",
                                    "--dir", str(tmp_path)]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _ping(hosts, "gateway", "redis"):
            assert time.monotonic() < deadline, "redis on its own host never answered"
            time.sleep(0.1)
        hosts.link("redis", up=False)
        assert not _ping(hosts, "gateway", "redis")  # a partition
        hosts.link("redis", up=True)
        assert _ping(hosts, "gateway", "redis")
        made = (hosts.bridge, [h.namespace for h in hosts.hosts.values()])
    assert server.wait(timeout=10) is not None  # killed with its host
    assert made[0] not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(namespace in listed for namespace in made[1])
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    assert made[0] not in rules
