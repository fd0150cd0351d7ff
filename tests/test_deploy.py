"""deploy/: dashboards generated from code and up to date, every query and alert parses and
names a metric the services export, alert rules unit-tested, and a real Prometheus
(Debian's package) scraping a running gateway."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY, CollectorRegistry
from redis.asyncio import Redis

import waitroom.metrics  # noqa: F401  (defines every metric in REGISTRY)
from deploy import dashboards
from queue_service.metrics import EventCollector
from queue_service.service import QueueService
from tests.conftest import create_event, join, operator, wait_for
from tests.support.tools import stop_process, tool
from tests.test_metrics import value
from waitroom.redis_server import free_port
from waitroom.viewstore import ViewStore

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
# Our series, and Prometheus's own "up" of every target it scrapes.
METRIC = re.compile(r"\b((?:waitroom|process)_[a-z_]+|up)\b(?![-.])")


def _tool(name: str) -> str:
    return tool(name, "apt-get install prometheus")


def _exported_names() -> set[str]:
    """Every sample name the services can export."""
    registry = CollectorRegistry()
    registry.register(EventCollector(ViewStore(None)))  # type: ignore[arg-type]
    names: set[str] = set()
    for source in (REGISTRY, registry):
        for family in source.collect():
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",),
            }.get(family.type, ("",))
            names |= {family.name + suffix for suffix in suffixes}
    return names


def _alert_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text("utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _runnable(expr: str) -> str:
    """A dashboard query with its template variables given values Prometheus accepts."""
    return expr.replace("$event", ".*")


def test_dashboards_are_generated_from_code_and_up_to_date() -> None:
    for name, text in dashboards.render().items():
        on_disk = (DEPLOY / "grafana" / "dashboards" / name).read_text("utf-8")
        assert on_disk == text, f"{name} is out of date: run python -m deploy.dashboards"
    night = dashboards.render()["registration-night.json"]
    for title in ("The line", "The door", "The cart", "The payments", "Errors"):
        assert f'"title": "{title}"' in night


def test_every_query_parses_and_names_exported_metrics(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    queries = [_runnable(e) for e in dashboards.expressions()] + _alert_expressions()
    assert len(queries) > 30
    exported = _exported_names() | {"up"}
    for expr in queries:
        names = set(METRIC.findall(expr))
        assert names, expr
        assert names <= exported, (expr, names - exported)
    # promtool 2.42 has no PromQL subcommand: each query becomes a recording rule.
    rules = {
        "groups": [
            {
                "name": "queries",
                "rules": [
                    {"record": f"waitroom:query:{i}", "expr": q} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_rules_and_their_unit_tests() -> None:
    promtool = _tool("promtool")
    for args in (
        ["check", "rules", str(PROMETHEUS / "alerts.yml")],
        ["test", "rules", str(PROMETHEUS / "alerts_test.yml")],
        ["check", "config", str(PROMETHEUS / "prometheus.yml")],
    ):
        result = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    for provisioning in (DEPLOY / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(provisioning.read_text("utf-8"))["apiVersion"] == 1


@pytest.fixture
async def prometheus_server(tmp_path: Path, client: TestClient[Any, Any]) -> AsyncIterator[str]:
    binary = _tool("prometheus")
    port = free_port()
    listener = operator(client).server  # /metrics lives on the operator listener
    gateway = f"{listener.host}:{listener.port}"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "waitroom-gateway", "static_configs": [{"targets": [gateway]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await stop_process(proc)


async def test_a_real_prometheus_scrapes_the_gateway(
    client: TestClient[Any, Any], redis: Redis, leader: QueueService, prometheus_server: str
) -> None:
    await create_event(client, redis, opens_in=600)
    for _ in range(3):
        await join(client)
    # The registry is the test process's own: earlier tests counted joins too.
    exposed = await (await operator(client).get("/metrics")).text()
    joins = value(exposed, "waitroom_joins_total", event="camp")
    assert joins >= 3
    async with aiohttp.ClientSession() as http:

        async def query(expr: str) -> dict[str, Any]:
            async with http.get(prometheus_server + "/api/v1/query", params={"query": expr}) as r:
                body: dict[str, Any] = await r.json()
                return body

        async def ready() -> bool:
            try:
                async with http.get(prometheus_server + "/-/ready") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(ready, 30)

        async def scraped() -> bool:
            result = (await query('waitroom_joins_total{event="camp"}'))["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) == joins

        await wait_for(scraped, 30)
        up = (await query('up{job="waitroom-gateway"}'))["data"]["result"]
        assert up and up[0]["value"][1] == "1"
        # Every dashboard query is accepted by the real query engine too.
        for expr in dashboards.expressions():
            answer = await query(_runnable(expr))
            assert answer["status"] == "success", (expr, answer)
        rules = None
        async with http.get(prometheus_server + "/api/v1/rules") as r:
            rules = await r.json()
        loaded = {rule["name"] for g in rules["data"]["groups"] for rule in g["rules"]}
        assert "WaitroomNoQueueLeader" in loaded and len(loaded) == 10
