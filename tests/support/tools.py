"""What a test needs from the machine: where it is missing, the test is skipped here and
fails on CI, which must run every test (``.ci/run`` installs what they need)."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip the test here; fail it on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but {reason}")
    pytest.skip(reason)


def tool(name: str, install: str = "") -> str:
    """The path of the command ``name``; ``install`` says how to get it."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed" + (f" ({install})" if install else ""))
    return found


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
