"""deploy/kubernetes: every overlay renders (``kubectl kustomize``, offline), every object
is valid against the Kubernetes schemas in strict mode (an unknown or misspelled field
fails), and the manifests agree with what the processes really serve: commands, ports,
probes, settings names, the headless Services the gRPC targets name, drain times.

No cluster runs here (no kind, k3s or minikube): these checks are what keeps the
manifests honest."""

from __future__ import annotations

import copy
import secrets
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.__main__ import SHUTDOWN_TIMEOUT_S
from gateway.app import create_app
from tests.support.tools import tool
from waitroom.grpc_server import GRACE_S
from waitroom.settings import Settings
from waitroom.tokens import new_signing_key

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
KUBERNETES_VERSION = "1.32.0"
# The process each console script runs, and the settings naming its ports.
PROCESSES = {
    "waitroom-gateway": {"http": "WAITROOM_HTTP_PORT", "admin": "WAITROOM_ADMIN_PORT"},
    "waitroom-queue": {
        "grpc": "WAITROOM_QUEUE_GRPC_PORT", "metrics": "WAITROOM_QUEUE_METRICS_PORT",
    },
    "waitroom-cart": {"grpc": "WAITROOM_CART_GRPC_PORT", "metrics": "WAITROOM_CART_METRICS_PORT"},
    "waitroom-payments": {
        "grpc": "WAITROOM_PAYMENT_GRPC_PORT", "metrics": "WAITROOM_PAYMENT_METRICS_PORT",
    },
}  # fmt: skip
Obj = dict[str, Any]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    """The overlay's objects, rendered from a copy of deploy/kubernetes (the dev overlay
    gets the secrets file `waitroom keygen` writes, as its README says)."""
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, tree, ignore=shutil.ignore_patterns("secrets.env"))
    keygen = subprocess.check_output([sys.executable, "-m", "waitroom.cli", "keygen"], text=True)
    (tree / "overlays" / "dev" / "secrets.env").write_text(keygen)
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(tree / "overlays" / request.param)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [obj for obj in yaml.safe_load_all(out) if obj]


def of_kind(objs: list[Obj], kind: str) -> Iterator[Obj]:
    return (obj for obj in objs if obj["kind"] == kind)


def settings_of(objs: list[Obj]) -> dict[str, str]:
    (config,) = of_kind(objs, "ConfigMap")
    return dict(config["data"])


def test_every_object_is_valid_against_the_schemas(rendered: list[Obj]) -> None:
    kinds = {obj["kind"] for obj in rendered}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    assert {"NetworkPolicy", "ConfigMap"} <= kinds
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_misspelled_field_is_refused(rendered: list[Obj]) -> None:
    """The check above can fail: strict mode refuses a key the schema does not know."""
    deployment = copy.deepcopy(next(of_kind(rendered, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_settings_names_are_the_processes_settings(rendered: list[Obj]) -> None:
    known = {f"WAITROOM_{name.upper()}" for name in Settings.model_fields}
    names = set(settings_of(rendered))
    for secret in of_kind(rendered, "Secret"):
        names |= set(secret.get("data", {}))
    assert names <= known, names - known
    for deployment in of_kind(rendered, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                assert env["name"] in known, env["name"]


def test_commands_ports_and_probes_match_the_processes(rendered: list[Obj]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    settings = settings_of(rendered)
    served = {"waitroom-gateway": _gateway_paths()}
    names: dict[str, set[str]] = {"ConfigMap": set(), "Secret": set()}
    for obj in rendered:
        names.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    seen = set()
    for deployment in of_kind(rendered, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        command = container["command"][0]
        assert command in scripts, command
        seen.add(command)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {name: int(settings[key]) for name, key in PROCESSES[command].items()}
        # Prometheus scrapes the port that serves /metrics (the gateway's operator port).
        scraped = int(
            deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
        )
        assert scraped == ports.get("metrics", ports.get("admin"))
        for probe in (container["livenessProbe"], container["readinessProbe"]):
            if "httpGet" in probe:
                assert probe["httpGet"]["path"] in served[command]
                assert probe["httpGet"]["port"] in ports
            else:
                assert probe["grpc"]["port"] == ports["grpc"]
        for ref in container["envFrom"]:  # generated names carry a hash suffix
            if "configMapRef" in ref:
                assert ref["configMapRef"]["name"] in names["ConfigMap"]
            else:  # production: the operator's own Secret, not in git
                assert ref["secretRef"]["name"] in names["Secret"] | {"waitroom-secrets"}
    assert seen == set(PROCESSES)


def _gateway_paths() -> set[str]:
    """The paths the gateway's application routes (probes must name one of them)."""
    app = create_app(
        Settings(
            admin_token="probe-check-admin-token",
            ticket_secret=secrets.token_urlsafe(32),
            token_signing_key=new_signing_key(),
        )
    )
    return {resource.canonical for resource in app.router.resources()}


def test_services_select_pods_and_the_grpc_targets_are_headless(rendered: list[Obj]) -> None:
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in of_kind(rendered, "Deployment")}
    services = {s["metadata"]["name"]: s for s in of_kind(rendered, "Service")}
    for service in services.values():
        selector = service["spec"]["selector"]
        matching = [t for t in pods.values() if selector.items() <= t["metadata"]["labels"].items()]
        assert len(matching) == 1, service["metadata"]["name"]
        port_names = {p["name"] for p in matching[0]["spec"]["containers"][0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
    settings = settings_of(rendered)
    for target in ("WAITROOM_CART_TARGET", "WAITROOM_PAYMENT_TARGET"):
        host, port = settings[target].removeprefix("dns:///").split(":")
        assert services[host]["spec"].get("clusterIP") == "None", host  # every replica
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}


def test_pods_run_locked_down_and_drain_in_time(rendered: list[Obj]) -> None:
    defaults = Settings.model_fields
    checkout_s = defaults["provider_timeout_s"].default * 2 + defaults["grpc_deadline_s"].default
    drain = {
        "waitroom-gateway": SHUTDOWN_TIMEOUT_S, "waitroom-queue": GRACE_S,
        "waitroom-cart": checkout_s, "waitroom-payments": defaults["provider_timeout_s"].default,
    }  # fmt: skip
    for deployment in of_kind(rendered, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(container["resources"])
        assert pod["terminationGracePeriodSeconds"] > drain[container["command"][0]]


def test_only_the_gateway_is_open_to_all(rendered: list[Obj]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy"))
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies)
    open_to_all = [
        p["spec"]["podSelector"]
        for p in policies
        if any("from" not in rule for rule in p["spec"].get("ingress", []))
    ]
    assert open_to_all == [{"matchLabels": {"app.kubernetes.io/name": "gateway"}}]
