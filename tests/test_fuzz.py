"""Every API described and fuzzed: schemathesis over the public, registration and operator
documents (docs/openapi/) against a real stack of processes, bounded and seeded. No
request may get a 5xx, and every documented answer must match its schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.parent import admitted, open_night
from waitroom.devstack import LocalStack, http_request, private_env

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parent.parent
EVENT = "fuzz"
# No 5xx; every documented answer as documented; what the document refuses, refused.
CHECKS = ",".join(
    (
        "not_a_server_error",
        "response_schema_conformance",
        "content_type_conformance",
        "negative_data_rejection",
    )
)
EXAMPLES = 25
SEED = 20261124


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, str]]:
    """A stack of its own, an event open with the demo catalogue, an admitted parent."""
    run_dir = tmp_path_factory.mktemp("fuzz-stack")
    env = {**os.environ, **private_env(), "WAITROOM_CART_GRPC_LISTENERS": "1"}
    env.pop("WAITROOM_REDIS_URL", None)
    env.pop("WAITROOM_DATABASE_URL", None)
    local = LocalStack(run_dir, env, gateways=1, log_dir=run_dir / "logs")
    try:
        local.start()
        assert local.wait_ready(timeout_s=60)
        admin = env["WAITROOM_ADMIN_TOKEN"]
        event = open_night(opens_in_s=1)
        status, body = http_request(
            "PUT", f"{local.admin_base}/admin/v1/events/{EVENT}", admin, event
        )
        assert status == 201, body
        subprocess.run(
            [sys.executable, "-m", "cart_service.demo", "--database",
             local.env["WAITROOM_DATABASE_URL"], "--event", EVENT],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        ticket = admitted(f"{local.base}/api/v1/events/{EVENT}")
        yield local, ticket["admission"]["token"]
    finally:
        local.stop()


def _fuzz(document: str, url: str, *headers: str) -> None:
    command = [
        str(Path(sys.executable).parent / "st"), "run", str(ROOT / "docs/openapi" / document),
        "--url", url, "--checks", CHECKS, "--max-examples", str(EXAMPLES),
        "--seed", str(SEED), "--workers", "1", "--request-timeout", "20",
        "--no-color", "--warnings", "off",
        *(flag for header in headers for flag in ("-H", header)),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=500, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and " 0 generated" not in done.stdout, done.stdout[-3000:]


def test_the_public_api_holds_to_its_document(stack: tuple[LocalStack, str]) -> None:
    _fuzz("public.yaml", stack[0].base)


def test_the_registration_api_holds_to_its_document(stack: tuple[LocalStack, str]) -> None:
    local, token = stack
    _fuzz("registration.yaml", local.base, f"Authorization: Bearer {token}")


def test_the_operator_api_holds_to_its_document(stack: tuple[LocalStack, str]) -> None:
    local, _ = stack
    admin = local.env["WAITROOM_ADMIN_TOKEN"]
    _fuzz("operator.yaml", local.admin_base, f"Authorization: Bearer {admin}")
