"""Docker for the tests that need a daemon (.ci/run starts one): skip where none answers,
fail on CI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.tools import unavailable

ROOT = Path(__file__).resolve().parent.parent.parent
BASE = "local/debian:bookworm"
IMAGE = "waitroom:test"


def docker() -> str:
    found = shutil.which("docker")
    running = found is not None and subprocess.run(
        [found, "info"], capture_output=True, check=False
    ).returncode == 0  # fmt: skip
    if not running or found is None:
        unavailable("no Docker daemon answers here")
    return found


def build_image() -> str:
    """The project's image, as ``make image`` builds it, on a base made on this machine
    (no registry here); its layers are cached, so a second build costs seconds."""
    found = docker()
    subprocess.run([str(ROOT / "deploy" / "docker" / "local-base.sh"), BASE], check=True)
    subprocess.run(
        ["make", "-s", "image", f"BASE_IMAGE={BASE}", f"IMAGE={IMAGE}"],
        check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    return found
