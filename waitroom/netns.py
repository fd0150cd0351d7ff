"""Several hosts on one machine, for drills and tests: Linux network namespaces joined by
veth pairs to one bridge, on a private range (10.77.<net>.0/24). Root only.

``Hosts`` is a context manager: everything it made (namespaces, links, the bridge, its
firewall rule) is removed when the block ends, whatever happened inside, and a host's
processes die with its namespace's teardown. Once ``dockerd`` has run, the FORWARD
chain's policy is DROP; traffic across our own bridge is let through by a rule of our own.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from types import TracebackType


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def available() -> str | None:
    """Why hosts cannot be made here, or None when they can."""
    if shutil.which("ip") is None or shutil.which("iptables") is None:
        return "iproute2 and iptables are needed"
    probe = f"wrprobe{secrets.token_hex(2)}"
    if _ip("netns", "add", probe, check=False).returncode != 0:
        return "cannot create network namespaces (root is needed)"
    _ip("netns", "delete", probe, check=False)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    veth: str  # our side of the pair, on the bridge

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class Hosts:
    names: list[str]
    net: int = 77  # the third octet: 10.77.<net>.0/24
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"wr{self.tag}br"

    def __enter__(self) -> Hosts:
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def _make(self) -> None:
        subnet = f"10.{self.net}.{int(self.tag, 16) % 200 + 20}"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        subprocess.run(
            ["iptables", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"],
            check=True, capture_output=True,
        )  # fmt: skip
        for number, name in enumerate(self.names, start=2):
            namespace = f"wr{self.tag}-{name}"
            veth, peer = f"wr{self.tag}v{number}", f"wr{self.tag}p{number}"
            address = f"{subnet}.{number}"
            _ip("netns", "add", namespace)
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", namespace)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            inside = ["netns", "exec", namespace, "ip"]
            _ip(*inside, "addr", "add", f"{address}/24", "dev", peer)
            _ip(*inside, "link", "set", peer, "up")
            _ip(*inside, "link", "set", "lo", "up")
            self.hosts[name] = Host(name, namespace, address, veth)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def link(self, name: str, up: bool) -> None:
        """Take a host off the network (its link down) or put it back."""
        _ip("link", "set", self.hosts[name].veth, "up" if up else "down")

    def remove(self) -> None:
        for host in self.hosts.values():
            # Whatever still runs in the namespace is killed with it.
            pids = _ip("netns", "pids", host.namespace, check=False).stdout.split()
            if pids:
                subprocess.run(["kill", "-9", *pids], capture_output=True, check=False)
            _ip("netns", "delete", host.namespace, check=False)  # its veth pair goes too
            _ip("link", "delete", host.veth, check=False)
        self.hosts.clear()
        _ip("link", "delete", self.bridge, check=False)
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        while subprocess.run(["iptables", "-D", *rule], capture_output=True).returncode == 0:
            pass
