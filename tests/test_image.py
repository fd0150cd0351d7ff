"""The container image, where a Docker daemon runs (``.ci/run`` starts one): ``make image``
builds it on a base made on this machine (no registry here), and the gateway runs from
it, as a user without privileges, on a read-only root filesystem, against a Redis on the
host; the image has no compiler, every process's command, and a health check that turns
healthy."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.support.docker import IMAGE, build_image
from tests.support.gateway_process import assert_serves_an_event, gateway_env
from waitroom.redis_server import free_port
from waitroom.settings import Settings


@pytest.fixture(scope="module")
def image() -> str:
    return build_image()


def _run(docker: str, *args: str) -> str:
    return subprocess.run(
        [docker, "run", "--rm", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_image_is_locked_down(image: str) -> None:
    (config,) = json.loads(
        subprocess.check_output([image, "image", "inspect", IMAGE]).decode()
    )  # fmt: skip
    assert config["Config"]["User"] == "10001:10001"
    assert config["Config"]["Cmd"] == ["waitroom-gateway"]
    assert config["Config"]["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
    assert _run(image, IMAGE, "id", "-u") == "10001"
    no_compiler = "import shutil; print([c for c in ('gcc', 'cc', 'clang') if shutil.which(c)])"
    assert _run(image, IMAGE, "python3", "-c", no_compiler) == "[]"
    commands = "waitroom-gateway waitroom-queue waitroom-cart waitroom-payments waitroom"
    script = f"for c in {commands}; do command -v $c; done"
    found = _run(image, "--entrypoint", "sh", IMAGE, "-c", script)
    assert len(found.splitlines()) == 5, found


def test_the_gateway_runs_from_it_read_only(image: str, settings: Settings) -> None:
    port = free_port()
    env = gateway_env(settings, port)
    name = f"waitroom-test-{secrets.token_hex(4)}"
    flags = [f"--env={key}={value}" for key, value in env.items()]
    subprocess.run(
        [image, "run", "--detach", "--name", name, "--network", "host", "--read-only",
         "--tmpfs", "/tmp", *flags, IMAGE],
        check=True, capture_output=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    operator_base = f"http://127.0.0.1:{env['WAITROOM_ADMIN_PORT']}"
    try:
        _wait(lambda: _status(base + "/healthz") == 200, 30)
        assert_serves_an_event(base, operator_base)

        def healthy() -> bool:
            state = subprocess.check_output(
                [image, "inspect", "--format", "{{.State.Health.Status}}", name], text=True
            )  # fmt: skip
            return state.strip() == "healthy"

        _wait(healthy, 40)  # the image's HEALTHCHECK, every 10 s
    finally:
        logs = subprocess.run([image, "logs", name], capture_output=True, text=True, check=False)
        subprocess.run([image, "rm", "--force", name], capture_output=True, check=False)
    assert "Traceback" not in logs.stdout + logs.stderr, logs.stderr[-2000:]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _wait(condition: object, seconds: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
