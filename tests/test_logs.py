"""Logs that serve the night (waitroom/logs.py): JSON lines with the service and the
request id when asked; a parent's request id answered back by the gateway and carried
through gRPC to the cart service and on to the payment adapter, whose log lines of that
call carry it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.registration import CHARGED_LATE, Stack
from tests.test_registration_api import _ready_to_pay, stack  # noqa: F401 - the fixture
from waitroom import logs


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_service_and_the_request_id(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup("cart", "INFO", "json")
    token = logs.REQUEST_ID.set("click-1")
    try:
        logging.getLogger("cart_service.test").warning("cart %s locked", "A1")
    finally:
        logs.REQUEST_ID.reset(token)
    logging.getLogger("cart_service.test").debug("below the level: not written")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert (line["service"], line["request_id"], line["level"], line["message"]) == (
        "cart", "click-1", "WARNING", "cart A1 locked",
    )  # fmt: skip
    assert line["logger"] == "cart_service.test" and line["time"]
    logs.setup("gateway", "INFO", "text")
    logging.getLogger("gateway").info("plain")
    assert capsys.readouterr().err.rstrip().endswith("gateway INFO plain")


def test_a_request_id_is_kept_only_when_sane() -> None:
    assert logs.request_id_from("lb-3f2a.77") == "lb-3f2a.77"
    for bad in ("", None, "x" * 65, "a b", "<script>"):
        made = logs.request_id_from(bad)
        assert made != bad and len(made) == 16
    new = {logs.request_id_from(None) for _ in range(1000)}
    assert len(new) == 1000 and all(_VALID_NEW.match(m) for m in new)


_VALID_NEW = re.compile(r"^[0-9a-f]{16}$")


class _Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), logs.REQUEST_ID.get()))


async def test_a_parents_request_id_follows_the_call_through_the_services(
    stack: Stack,  # noqa: F811
) -> None:
    s = stack
    headers = await s.admitted()
    await _ready_to_pay(s, headers)
    seen = _Seen()
    logging.getLogger().addHandler(seen)
    try:
        card = {"number": CHARGED_LATE, "expiry": "12/30", "cvv": "123"}
        resp = await s.client.post(
            "/api/v1/events/camp/cart/checkout",
            json={"card": card},
            headers={**headers, "Idempotency-Key": "key-logs-0001", "X-Request-Id": "click-7f3a"},
        )
        body: dict[str, Any] = await resp.json()
    finally:
        logging.getLogger().removeHandler(seen)
    assert resp.status == 202 and body["outcome"] == "pending", body
    assert resp.headers["X-Request-Id"] == "click-7f3a"
    # The payment adapter, two gRPC hops away, logged the provider's silence under it.
    adapter = [rid for message, rid in seen.lines if "no answer from" in message]
    assert adapter == ["click-7f3a"], seen.lines
    other = await s.client.get("/api/v1/events/camp/cart", headers=headers)
    assert len(other.headers["X-Request-Id"]) == 16  # made when the client sends none
