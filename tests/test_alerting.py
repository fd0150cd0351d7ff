"""Alerts reach someone: a real Prometheus (Debian's) evaluates deploy/prometheus/alerts.yml
against a target that is down, a real Alertmanager (Debian's prometheus-alertmanager)
routes the alert with deploy/prometheus/alertmanager.yml, and a webhook receiver in this
test gets it on the on-call route (severity page).

Two values of the shipped files are shortened here, and only these: the rule's ``for:
1m`` (the rule's own timing is unit-tested by ``promtool test rules``, alerts_test.yml)
and Alertmanager's ``group_wait``; the receivers' URLs point at this test's webhook."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.conftest import wait_for
from tests.support.tools import stop_process, tool
from waitroom.redis_server import free_port

PROMETHEUS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"


async def _process(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    received: list[tuple[str, dict[str, Any]]] = []

    async def take(request: web.Request) -> web.Response:
        received.append((request.path, json.loads(await request.read())))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{route}", take)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await runner.cleanup()


@pytest.mark.timeout(120)
async def test_a_target_down_reaches_the_on_call_webhook(
    tmp_path: Path, webhook: tuple[str, list[tuple[str, dict[str, Any]]]]
) -> None:
    base, received = webhook
    manager = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text("utf-8"))
    manager["route"]["group_wait"] = "1s"
    for receiver in manager["receivers"]:
        receiver["webhook_configs"][0]["url"] = f"{base}/{receiver['name']}"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(manager), "utf-8")
    rules = (PROMETHEUS / "alerts.yml").read_text("utf-8")
    shortened, count = re.subn(
        r"(alert: WaitroomTargetDown\n(?:.*\n)*?\s+for: )1m", r"\g<1>2s", rules
    )
    assert count == 1
    (tmp_path / "alerts.yml").write_text(shortened, "utf-8")
    manager_port, prometheus_port, dead = free_port(), free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{manager_port}"]}]}]
        },
        # Nothing listens there: the cart replica is down.
        "scrape_configs": [
            {"job_name": "waitroom-cart", "static_configs": [{"targets": [f"127.0.0.1:{dead}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), "utf-8")
    alertmanager = await _process(
        tool("prometheus-alertmanager", "apt-get install prometheus-alertmanager"),
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'am'}",
        f"--web.listen-address=127.0.0.1:{manager_port}",
        "--cluster.listen-address=",
    )
    prometheus = await _process(
        tool("prometheus", "apt-get install prometheus"),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
    )
    try:

        async def delivered() -> bool:
            return any(
                alert["labels"].get("alertname") == "WaitroomTargetDown"
                for _, body in received
                for alert in body["alerts"]
            )

        await wait_for(delivered, timeout_s=90, every_s=0.5)
    finally:
        await stop_process(prometheus)
        await stop_process(alertmanager)
    route, body = next(
        (route, body)
        for route, body in received
        if any(a["labels"].get("alertname") == "WaitroomTargetDown" for a in body["alerts"])
    )
    assert route == "/on-call"  # severity page: the on-call route, not the ticket queue
    alert = next(a for a in body["alerts"] if a["labels"]["alertname"] == "WaitroomTargetDown")
    assert alert["status"] == "firing"
    assert alert["labels"]["job"] == "waitroom-cart"
    assert alert["labels"]["instance"] == f"127.0.0.1:{dead}"
    assert "Runbook: docs/operations.md" in alert["annotations"]["description"]
