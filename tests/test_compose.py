"""deploy/compose: the file is valid (``docker-compose config``, Debian's compose v1) and
agrees with the processes: commands are the package's console scripts, every setting is
a real one, the gRPC targets, nginx's upstream and Prometheus' targets name services of
the file on the ports the processes serve; Prometheus' and Alertmanager's own files pass
their own checkers.

Not here: bringing it up. Its Redis, PostgreSQL, nginx, Prometheus, Alertmanager,
Grafana and SMTP sink come from their official images, and no registry is reachable on
the project's machines (deploy/compose/README.md says what was run instead)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from waitroom.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PORTS = {"waitroom-gateway": 8080, "waitroom-queue": 9101, "waitroom-cart": 9102}
PORTS["waitroom-payments"] = 9103


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must check the compose stack: {name} is missing (.ci/run)")
        pytest.skip(f"{name} is not installed")
    return found


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
        [_tool("docker-compose"), "--project-directory", str(deploy_copy / "compose"),
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
            assert scraped.get(name) == PORTS[service["command"][0]], name


def test_prometheus_and_alertmanager_accept_their_files(deploy_copy: Path) -> None:
    compose = deploy_copy / "compose"
    shutil.copy(deploy_copy / "prometheus" / "alerts.yml", compose / "alerts.yml")
    subprocess.run(
        [_tool("promtool"), "check", "config", str(compose / "prometheus.yml")],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [_tool("amtool"), "check-config", str(compose / "alertmanager.yml")],
        check=True, capture_output=True,
    )  # fmt: skip
