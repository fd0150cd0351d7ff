"""The fault drill's hosts (loadtests/hoststack.py): the whole stack comes up across
twelve network namespaces, the parents' host reaches the load balancer and nothing else,
and stopping removes every host, process and the database's directory, so a second stack
comes up right after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import hoststack
from tests.support.tools import unavailable
from waitroom.devstack import private_env


def _status_from(stack: hoststack.HostStack, host: str, url: str) -> str:
    probe = (
        "import urllib.request, urllib.error\n"
        "try:\n"
        f"    print(urllib.request.urlopen({url!r}, timeout=2).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "except OSError as e:\n"
        "    print('unreachable')\n"
    )
    done = subprocess.run(
        stack.command_on(host, [sys.executable, "-c", probe]),
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.timeout(240)
def test_the_stack_over_hosts_comes_up_isolates_the_parents_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    why = hoststack.available()
    if why is not None:
        unavailable(why)
    for run in range(2):  # a second stack right after the first
        stack = hoststack.HostStack(
            tmp_path / f"run-{run}", {**os.environ, **private_env()}, tmp_path / f"logs-{run}"
        )
        try:
            stack.prepare()
            stack.start()
            assert stack.wait_ready(), "the stack over hosts did not become ready"
            gateway = f"http://{stack.addr('gw-a')}:{hoststack.HTTP_PORT}/readyz"
            assert _status_from(stack, "locust", stack.base + "/readyz") == "200"
            assert _status_from(stack, "locust", gateway) == "unreachable"
            assert _status_from(stack, "lb", gateway) == "200"
            namespaces = [h.namespace for h in stack.hosts.hosts.values()]
            pg_dir = stack._pg_dir
            assert pg_dir is not None and pg_dir.exists()
        finally:
            stack.stop()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(namespace in listed for namespace in namespaces)
        assert not pg_dir.exists()
        assert all(not child.running() for child in stack.supervisor.children)
