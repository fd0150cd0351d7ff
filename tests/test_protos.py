"""The protos, checked like a public API with buf (npm's ``@bufbuild/buf``, installed
under .tools/ on first use): ``buf lint`` with the rules of buf.yaml, and ``buf
breaking`` against the protos of the last release (``protos/released/``, a buf image),
so a field renumbered, retyped or renamed, or a method removed, fails CI. A second test
breaks a field on purpose and expects ``buf breaking`` to say so."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import tool

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
BUF_VERSION = "1.75.0"
RELEASED = ROOT / "protos" / "released" / "waitroom-0.1.0.binpb"


@pytest.fixture(scope="module")
def buf() -> str:
    found = TOOLS / "node_modules" / ".bin" / "buf"
    if not found.exists():
        npm = tool("npm", "buf is fetched with it")
        subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(TOOLS),
             f"@bufbuild/buf@{BUF_VERSION}"],
            check=True, capture_output=True,
        )  # fmt: skip
    return str(found)


def test_buf_lint_and_no_breaking_change_since_the_release(buf: str) -> None:
    for check in (["lint"], ["breaking", "--against", str(RELEASED)]):
        done = subprocess.run([buf, *check], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_retyped_field_is_a_breaking_change(buf: str, tmp_path: Path) -> None:
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    cart = tmp_path / "protos" / "waitroom" / "pb" / "cart" / "v1" / "cart.proto"
    text = cart.read_text()
    # A field of the released 0.1.0 API (Activity.price_cents), not one added since.
    changed = re.sub(r"\bint32 price_cents = (\d+);", r"string price_cents = \1;", text, count=1)
    assert changed != text
    cart.write_text(changed)
    done = subprocess.run(
        [buf, "breaking", "--against", str(RELEASED)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "changed type" in done.stdout + done.stderr
