"""deploy/compose: the file is valid (``docker-compose config``, Debian's compose v1) and
agrees with the processes: commands are the package's console scripts, every setting is
a real one, the gRPC targets, nginx's upstream and Prometheus' targets name services of
the file on the ports the processes serve; Prometheus' and Alertmanager's own files pass
their own checkers.

And up for real where a Docker daemon runs: no registry is reachable on the project's
machines, so Redis, PostgreSQL and nginx come from Debian's packages
(docker-compose.local.yml); Prometheus, Alertmanager, Grafana and Mailpit have no
stand-in and stay down in that run."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.docker import IMAGE, build_image
from tests.support.parent import ROY, admitted, checkout, open_night, ready_to_pay
from tests.support.tools import tool
from waitroom.redis_server import free_port
from waitroom.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PORTS = {"waitroom-gateway": 8080, "waitroom-queue": 9101, "waitroom-cart": 9102}
PORTS["waitroom-payments"] = 9103
# Where Prometheus scrapes each process: the gateway's /metrics is on its operator port.
SCRAPED = {**PORTS, "waitroom-gateway": 8081}


@pytest.fixture(scope="module")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/ copied, with the secrets file `waitroom keygen` writes, as the README says."""
    copy = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("secrets.env", "*.crt"))
    keygen = subprocess.check_output([sys.executable, "-m", "waitroom.cli", "keygen"], text=True)
    (copy / "compose" / "secrets.env").write_text(keygen)
    return copy


@pytest.fixture(scope="module")
def stack(deploy_copy: Path) -> dict[str, Any]:
    out = subprocess.run(
        [tool("docker-compose"), "--project-directory", str(deploy_copy / "compose"),
         "-f", str(deploy_copy / "compose" / "docker-compose.yml"), "config"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return dict(yaml.safe_load(out))


def _ours(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in stack["services"].items()
        if service["image"].startswith("waitroom:")
    }


def test_processes_commands_and_settings(stack: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    ours = _ours(stack)
    commands = {s["command"][0] for s in ours.values()}
    assert set(PORTS) <= commands
    known = {f"WAITROOM_{name.upper()}" for name in Settings.model_fields}
    for name, service in ours.items():
        assert service["command"][0] in scripts or service["command"][:3] == [
            "python3", "-m", "cart_service.demo",
        ], name  # fmt: skip
        assert service["read_only"] is True, name
        environment = service["environment"]
        assert set(environment) <= known, set(environment) - known
        for required in ("WAITROOM_ADMIN_TOKEN", "WAITROOM_SERVICE_TOKEN", "WAITROOM_REDIS_URL"):
            assert environment.get(required), (name, required)
    queues = [n for n, s in ours.items() if s["command"] == ["waitroom-queue"]]
    assert len(queues) == 2  # a leader and a standby
    assert {s["environment"]["WAITROOM_INSTANCE"] for n, s in ours.items() if n in queues} == {
        "queue-a", "queue-b",
    }  # fmt: skip


def test_addresses_name_services_on_their_ports(stack: dict[str, Any], deploy_copy: Path) -> None:
    services = stack["services"]
    by_command = {s["command"][0]: n for n, s in _ours(stack).items()}
    environment = services[by_command["waitroom-gateway"]]["environment"]
    defaults = Settings.model_fields
    for target, script, port_setting in (
        ("WAITROOM_CART_TARGET", "waitroom-cart", "cart_grpc_port"),
        ("WAITROOM_PAYMENT_TARGET", "waitroom-payments", "payment_grpc_port"),
    ):
        host, port = environment[target].removeprefix("dns:///").split(":")
        assert host == by_command[script]
        assert int(port) == defaults[port_setting].default
    nginx = (deploy_copy / "compose" / "nginx.conf").read_text()
    (upstream,) = re.findall(r"server (\S+):(\d+)", nginx)
    assert upstream == (by_command["waitroom-gateway"], str(PORTS["waitroom-gateway"]))
    prometheus = yaml.safe_load((deploy_copy / "compose" / "prometheus.yml").read_text())
    scraped = {}
    for job in prometheus["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                scraped[name] = sd["port"]
    for name, service in _ours(stack).items():
        if service["command"][0] in PORTS:
            assert scraped.get(name) == SCRAPED[service["command"][0]], name


def test_prometheus_and_alertmanager_accept_their_files(deploy_copy: Path) -> None:
    compose = deploy_copy / "compose"
    shutil.copy(deploy_copy / "prometheus" / "alerts.yml", compose / "alerts.yml")
    subprocess.run(
        [tool("promtool"), "check", "config", str(compose / "prometheus.yml")],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [tool("amtool"), "check-config", str(deploy_copy / "prometheus" / "alertmanager.yml")],
        check=True, capture_output=True,
    )  # fmt: skip


def test_the_stack_serves_a_parent_end_to_end(deploy_copy: Path) -> None:
    """Up for real: with no registry here, Redis, PostgreSQL and nginx come from Debian's
    packages (docker-compose.local.yml), the rest of the file as written. A parent joins
    through nginx, is admitted, holds two weeks and pays; then everything is removed."""
    build_image()
    compose_dir = deploy_copy / "compose"
    project = f"wre2e{secrets.token_hex(3)}"
    compose = [
        tool("docker-compose"), "-p", project, "--project-directory", str(compose_dir),
        "-f", str(compose_dir / "docker-compose.yml"),
        "-f", str(compose_dir / "docker-compose.local.yml"),
    ]  # fmt: skip
    port = free_port()
    env = {**os.environ, "WAITROOM_IMAGE": IMAGE, "WAITROOM_PUBLIC_PORT": str(port)}
    secrets_env = (compose_dir / "secrets.env").read_text().split()
    admin = dict(line.split("=", 1) for line in secrets_env)["WAITROOM_ADMIN_TOKEN"]
    try:
        subprocess.run([*compose, "up", "-d", "--build"], check=True, env=env,
                       capture_output=True, timeout=600)  # fmt: skip
        paid = registered_parent(f"http://127.0.0.1:{port}", compose, env, admin)
        assert paid["outcome"] == "paid", paid
        assert paid["receipt"]["paid_cents"] == paid["receipt"]["total_cents"] > 0
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], env=env,
                       capture_output=True, check=False, timeout=120)  # fmt: skip


def registered_parent(
    base: str, compose: list[str], env: dict[str, str], admin: str
) -> dict[str, Any]:
    """One parent's night through the load balancer, on an event made for it."""
    event = f"e2e{secrets.token_hex(3)}"
    spec = open_night(opens_in_s=3)
    # The operator API is not on the load balancer: ask a gateway's operator listener.
    put = (
        "import sys, urllib.request as u; r = u.Request(sys.argv[1], data=sys.stdin.buffer"
        ".read(), method='PUT', headers={'Authorization': 'Bearer ' + sys.argv[2],"
        " 'Content-Type': 'application/json'}); print(u.urlopen(r).status)"
    )
    admin_url = f"http://127.0.0.1:8081/admin/v1/events/{event}"
    _wait_http(base + "/healthz")
    subprocess.run(
        [*compose, "exec", "-T", "gateway", "python3", "-c", put, admin_url, admin],
        input=json.dumps(spec).encode(), check=True, env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    load = f'python3 -m cart_service.demo --database "$WAITROOM_DATABASE_URL" --event {event}'
    subprocess.run(
        [*compose, "run", "--rm", "--entrypoint", "sh", "demo", "-c", load],
        check=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    api = f"{base}/api/v1/events/{event}"
    token = admitted(api)["admission"]["token"]
    ready_to_pay(api, token, ROY, "Léa", "07")
    status, paid = checkout(api, token)
    assert status == 200, paid
    return dict(paid)


def _wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (OSError, urllib.error.HTTPError):
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.5)
