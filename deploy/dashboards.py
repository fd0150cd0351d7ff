"""The Grafana dashboards, as typed code (grafana-foundation-sdk): ``python -m deploy.dashboards``
writes ``deploy/grafana/dashboards/*.json``; ``tests/test_deploy.py`` checks the files are
what this code gives, that every query parses (promtool) and names exported metrics.

- "Registration night": the line, the door, the cart, the payments and the errors on one
  screen, per event (a variable).
- "Services": latency and saturation per process.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).parent / "grafana" / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
EV = 'event=~"$event"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _target(q: Query, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(ref)


def series(title: str, unit: str, *queries: Query, w: int = 8, h: int = 7) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(h).span(w)
    for i, q in enumerate(queries):
        panel = panel.with_target(_target(q, chr(ord("A") + i)))
    return panel


def number(title: str, unit: str, q: Query, w: int = 4) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(w)
        .with_target(_target(q, "A"))
    )


def _base(uid: str, title: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["waitroom"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )


def registration_night() -> dashboard.Dashboard:
    board = _base("waitroom-night", "waitroom — Registration night").with_variable(
        dashboard.QueryVariable("event")
        .label("Event")
        .datasource(DATASOURCE)
        .query("label_values(waitroom_tickets, event)")
        .multi(True)
        .include_all(True)
    )
    return (
        board.with_row(dashboard.Row("The line"))
        .with_panel(number("Waiting", "short", Query(f'sum(waitroom_tickets{{{EV},status="waiting"}})')))
        .with_panel(number("In pre-queue", "short", Query(f'sum(waitroom_tickets{{{EV},status="prequeue"}})')))
        .with_panel(number("Admitted now", "short", Query(f"sum(waitroom_active_sessions{{{EV}}})")))
        .with_panel(number("Queue leader", "short", Query("sum(waitroom_queue_leader)")))
        .with_panel(number("Lost priority", "short", Query(f"sum(waitroom_lost_priority_total{{{EV}}})")))
        .with_panel(number("Seats left", "short", Query(f"sum(waitroom_seats_left{{{EV}}})")))
        .with_panel(
            series(
                "Tickets by status", "short",
                Query(f"sum by (event, status) (waitroom_tickets{{{EV}}})", "{{event}} {{status}}"),
            )
        )
        .with_panel(
            series(
                "Joins and polls per second", "reqps",
                Query(f"sum by (event) (rate(waitroom_joins_total{{{EV}}}[1m]))", "joins {{event}}"),
                Query(f"sum by (event) (rate(waitroom_polls_total{{{EV}}}[1m]))", "polls {{event}}"),
            )
        )
        .with_panel(
            series(
                "ETA error (actual - predicted admission)", "s",
                *(
                    Query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(waitroom_eta_error_seconds_bucket{{{EV}}}[10m])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.1, 0.5, 0.9)
                ),
            )
        )
        .with_row(dashboard.Row("The door"))
        .with_panel(
            series(
                "Admitted per minute: actual vs configured", "short",
                Query(f"sum by (event) (waitroom_admitted_last_minute{{{EV}}})", "actual {{event}}"),
                Query(f"sum by (event) (waitroom_admit_per_minute_configured{{{EV}}})", "configured {{event}}"),
                Query(f"sum by (event) (waitroom_outflow_per_minute_measured{{{EV}}})", "measured (ETA basis) {{event}}"),
            )
        )
        .with_panel(
            series(
                "Active sessions vs max_active", "short",
                Query(f"sum by (event) (waitroom_active_sessions{{{EV}}})", "active {{event}}"),
                Query(f"sum by (event) (waitroom_max_active{{{EV}}})", "max {{event}}"),
            )
        )
        .with_panel(
            series(
                "Lost priority and requeued per minute", "short",
                Query(f"sum by (event) (increase(waitroom_lost_priority_total{{{EV}}}[1m]))", "lost {{event}}"),
                Query(f"sum by (event) (increase(waitroom_requeued_total{{{EV}}}[1m]))", "requeued {{event}}"),
            )
        )
        .with_row(dashboard.Row("The cart"))
        .with_panel(
            series(
                "Seats asked for, by outcome", "short",
                Query(f"sum by (outcome) (increase(waitroom_cart_holds_total{{{EV}}}[1m]))", "{{outcome}}"),
                Query(f"sum(increase(waitroom_cart_holds_expired_total{{{EV}}}[1m]))", "holds expired"),
                Query(f"sum(increase(waitroom_cart_extensions_total{{{EV}}}[1m]))", "extended"),
            )
        )
        .with_panel(
            series(
                "Seats: registered, left", "short",
                Query(f"sum by (event) (waitroom_seats_registered{{{EV}}})", "registered {{event}}"),
                Query(f"sum by (event) (waitroom_seats_left{{{EV}}})", "left {{event}}"),
                Query(f"sum by (event) (waitroom_seats_capacity{{{EV}}})", "capacity {{event}}"),
            )
        )
        .with_panel(
            series(
                "Checkouts by outcome", "short",
                Query(f"sum by (outcome) (increase(waitroom_checkouts_total{{{EV}}}[1m]))", "{{outcome}}"),
            )
        )
        .with_row(dashboard.Row("The payments"))
        .with_panel(
            series(
                "Payments by outcome per minute", "short",
                Query("sum by (outcome) (increase(waitroom_payments_total[1m]))", "{{outcome}}"),
            )
        )
        .with_panel(
            series(
                "Provider latency", "s",
                Query(
                    "histogram_quantile(0.95, sum by (le) "
                    '(rate(waitroom_payment_provider_duration_seconds_bucket{operation="charge"}[5m])))',
                    "p95 charge",
                ),
                Query(
                    "histogram_quantile(0.5, sum by (le) "
                    '(rate(waitroom_payment_provider_duration_seconds_bucket{operation="charge"}[5m])))',
                    "p50 charge",
                ),
            )
        )
        .with_panel(series("Payments in flight", "short", Query("sum(waitroom_payments_in_flight)", "in flight")))
        .with_row(dashboard.Row("Errors"))
        .with_panel(
            series(
                "Gateway 5xx and 4xx per second", "reqps",
                Query('sum(rate(waitroom_http_requests_total{code=~"5.."}[1m]))', "5xx"),
                Query('sum by (code) (rate(waitroom_http_requests_total{code=~"4.."}[1m]))', "{{code}}"),
            )
        )
        .with_panel(
            series(
                "gRPC calls not OK per second", "reqps",
                Query(
                    'sum by (method, code) (rate(waitroom_grpc_server_handled_total{code!="OK"}[1m]))',
                    "{{method}} {{code}}",
                ),
            )
        )
    )  # fmt: skip


def services() -> dashboard.Dashboard:
    return (
        _base("waitroom-services", "waitroom — Services")
        .with_row(dashboard.Row("Latency"))
        .with_panel(
            series(
                "HTTP p99 by route", "s",
                Query(
                    "histogram_quantile(0.99, sum by (le, route) "
                    "(rate(waitroom_http_request_duration_seconds_bucket[5m])))",
                    "{{route}}",
                ),
                w=12,
            )
        )
        .with_panel(
            series(
                "Redis p99 by operation", "s",
                Query(
                    "histogram_quantile(0.99, sum by (le, operation) "
                    "(rate(waitroom_redis_command_duration_seconds_bucket[5m])))",
                    "{{operation}}",
                ),
                w=12,
            )
        )
        .with_panel(
            series(
                "gRPC p99 by method", "s",
                Query(
                    "histogram_quantile(0.99, sum by (le, method) "
                    "(rate(waitroom_grpc_server_handling_seconds_bucket[5m])))",
                    "{{method}}",
                ),
                w=12,
            )
        )
        .with_panel(
            series(
                "gRPC way in p99 by method (caller's send to handler's start)", "s",
                Query(
                    "histogram_quantile(0.99, sum by (le, method) "
                    "(rate(waitroom_grpc_server_way_in_seconds_bucket[5m])))",
                    "{{method}}",
                ),
                w=12,
            )
        )
        .with_panel(
            series(
                "Draw duration", "s",
                Query("max by (event) (rate(waitroom_draw_duration_seconds_sum[1h]) / rate(waitroom_draw_duration_seconds_count[1h]))", "{{event}}"),
                w=12,
            )
        )
        .with_row(dashboard.Row("Saturation per process"))
        .with_panel(
            series(
                "Requests per second by route", "reqps",
                Query("sum by (route) (rate(waitroom_http_requests_total[1m]))", "{{route}}"),
                w=12,
            )
        )
        .with_panel(
            series(
                "CPU per process", "percentunit",
                Query("rate(process_cpu_seconds_total[1m])", "{{job}} {{instance}}"),
                w=12,
            )
        )
        .with_panel(
            series(
                "Memory per process", "bytes",
                Query("process_resident_memory_bytes", "{{job}} {{instance}}"),
                w=12,
            )
        )
        .with_panel(
            series(
                "gRPC calls per second by method", "reqps",
                Query("sum by (service, method) (rate(waitroom_grpc_server_handled_total[1m]))", "{{method}}"),
                w=12,
            )
        )
    )  # fmt: skip


DASHBOARDS = {"registration-night.json": registration_night, "services.json": services}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def expressions() -> list[str]:
    """Every PromQL expression of every panel."""
    found: list[str] = []
    for text in render().values():
        for panel in json.loads(text).get("panels", []):
            found += [t["expr"] for t in panel.get("targets", []) if "expr" in t]
    return found


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
