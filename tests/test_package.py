"""The package as pip installs it: a wheel built from this tree, installed into a fresh
virtual environment outside it, runs a gateway through its console script, with its
templates, static files and Lua scripts (the wheel once left them out).

The fresh environment gets the project from the wheel alone; its dependencies are
borrowed from the test environment through a path file (``deps.pth``), so the test needs
no download. Path files name directories, they do not run the development install's
own path hooks: nothing of the source tree is importable there, which the test checks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support.gateway_process import assert_serves_an_event, gateway_env
from waitroom.redis_server import free_port
from waitroom.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPTS = (
    "waitroom", "waitroom-gateway", "waitroom-queue", "waitroom-cart", "waitroom-payments",
)  # fmt: skip
PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this tree's files (tracked or new, not ignored), built in a copy: an
    in-place build would leave setuptools' build/ in the tree."""
    tree, out = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("wheel")
    listed = subprocess.check_output(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT
    )
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(tree)],
        check=True, cwd=out,
    )  # fmt: skip
    (found,) = out.glob("waitroom-*.whl")
    return found


def test_the_wheel_carries_every_file_the_services_read(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for tracked in ("gateway/templates", "gateway/static", "cart_service/templates"):
        for path in (ROOT / tracked).iterdir():
            assert f"{tracked}/{path.name}" in names, path
    for path in (ROOT / "waitroom" / "scripts").glob("*.lua"):
        assert f"waitroom/scripts/{path.name}" in names, path
    for package in ("cart_service", "payment_adapter"):  # the schema's revisions
        for path in (ROOT / package / "migrations").rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(ROOT).as_posix()
                assert relative in names, relative
    for package in ("waitroom", "gateway", "queue_service", "cart_service", "payment_adapter"):
        assert f"{package}/py.typed" in names, package
    assert not any(n.startswith(("tests/", "loadtests/", "bench/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in CONSOLE_SCRIPTS:
        assert f"{script} = " in scripts, script


def test_an_installed_gateway_serves_pages(wheel: Path, tmp_path: Path, settings: Settings) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", PURELIB],
            text=True,
        ).strip()
    )  # fmt: skip
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--quiet", str(wheel)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    for script in CONSOLE_SCRIPTS:
        assert (venv / "bin" / script).exists(), script
    where = subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import gateway; print(gateway.__file__)"],
        text=True, cwd=tmp_path,
    )  # fmt: skip
    assert where.startswith(str(site)), where  # the wheel's copy, not the source tree

    port = free_port()
    env = {"PATH": os.environ["PATH"], **gateway_env(settings, port)}
    gateway = subprocess.Popen(
        [str(venv / "bin" / "waitroom-gateway")], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    operator_base = f"http://127.0.0.1:{env['WAITROOM_ADMIN_PORT']}"
    try:
        assert _get(base + "/healthz", gateway)[0] == 200
        assert_serves_an_event(
            base, operator_base
        )  # join.lua, templates, static files: from the wheel
    finally:
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=20)
    assert gateway.returncode == 0, err.decode()[-2000:]


def _get(url: str, proc: subprocess.Popen[bytes], wait_s: float = 20) -> tuple[int, bytes]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
