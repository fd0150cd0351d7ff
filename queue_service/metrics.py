"""Per-event metrics from the leader's views, read at scrape time (nothing to keep in step).

Only the leader refreshes the views, so only the leader exports these series; a standby
exports ``waitroom_queue_leader 0`` and nothing per event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from waitroom import events
from waitroom.viewstore import ViewStore

log = logging.getLogger(__name__)


class EventCollector(Collector):
    def __init__(self, store: ViewStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        tickets = GaugeMetricFamily(
            "waitroom_tickets", "Tickets by status", labels=["event", "status"]
        )
        active = GaugeMetricFamily(
            "waitroom_active_sessions", "Admitted sessions alive", labels=["event"]
        )
        max_active = GaugeMetricFamily(
            "waitroom_max_active", "Configured maximum of admitted sessions", labels=["event"]
        )
        configured = GaugeMetricFamily(
            "waitroom_admit_per_minute_configured", "Configured outflow", labels=["event"]
        )
        last_minute = GaugeMetricFamily(
            "waitroom_admitted_last_minute", "Tickets admitted in the last minute", labels=["event"]
        )
        measured = GaugeMetricFamily(
            "waitroom_outflow_per_minute_measured",
            "Measured outflow the ETAs are based on",
            labels=["event"],
        )
        state = GaugeMetricFamily(
            "waitroom_event_state", "1 for the event's current state", labels=["event", "state"]
        )
        totals = {
            name: CounterMetricFamily(f"waitroom_{name}", help_text, labels=["event"])
            for name, help_text in (
                ("joined", "Tickets issued"),
                ("admitted", "Tickets admitted"),
                ("lost_priority", "Tickets that lost priority (silent when their turn came)"),
                ("requeued", "Tickets put back at the end of the line"),
            )
        }
        clock = self._store.clock
        for event_id, view in list(self._store.views.items()):
            try:
                stats = events.event_stats(view, clock.now_ms())
            except (RuntimeError, KeyError, ValueError) as exc:  # a view changing under us
                log.debug("no metrics for %s this scrape: %s", event_id, exc)
                continue
            for status, count in stats.counts.items():
                tickets.add_metric([event_id, status], count)
            active.add_metric([event_id], stats.counts.get("admitted", 0))
            max_active.add_metric([event_id], view.config.max_active)
            configured.add_metric([event_id], view.config.admit_per_minute)
            last_minute.add_metric([event_id], stats.admitted_last_minute)
            measured.add_metric([event_id], stats.eta_rate_per_minute)
            state.add_metric([event_id, stats.state], 1)
            totals["joined"].add_metric([event_id], stats.joined_total)
            totals["admitted"].add_metric([event_id], stats.admitted_total)
            totals["lost_priority"].add_metric([event_id], stats.lost_priority_total)
            totals["requeued"].add_metric([event_id], stats.requeued_total)
        yield from (tickets, active, max_active, configured, last_minute, measured, state)
        yield from totals.values()
