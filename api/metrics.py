"""Prometheus metrics, one registry per app so that several apps in one process (tests) never clash.

Beyond the HTTP counters it reports, at scrape time, the backlog (messages waiting per queue, documents
per status) and the worker-side series (`workers.telemetry`) of this process, which are the embedded
worker's under `bayou serve`."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from celery import Celery
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from bayou.settings import Settings
from storage.models import Document, DocumentStatus
from workers.broker import broker_url, is_embedded, transport_options, waiting_counts
from workers.queues import ALL_QUEUES
from workers.telemetry import WorkerMetricsBridge

log = logging.getLogger(__name__)

# a scrape waits this long for a broker server, and never retries: a slow answer is worse than none
BROKER_PROBE_TIMEOUT_S = 2.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bayou_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bayou_http_request_seconds",
            "HTTP request latency by route template.",
            ["route"],
            registry=self.registry,
        )
        self.uploads = Counter(
            "bayou_uploads",
            "Uploads by outcome: created, duplicate, or the refusal's error code.",
            ["outcome"],
            registry=self.registry,
        )

    @classmethod
    def for_app(cls, settings: Settings, engine: Engine) -> Metrics:
        """The HTTP metrics plus the backlog of this installation and this process's worker series."""
        metrics = cls()
        metrics.registry.register(BacklogCollector(settings, engine))
        metrics.registry.register(WorkerMetricsBridge())
        return metrics


class BacklogCollector(Collector):
    """`bayou_queue_depth{queue}` and `bayou_documents{status}`, read when scraped. A source that fails
    (database or broker down) leaves its series out and reports `bayou_metrics_source_up{source}` 0, so
    the scrape itself still answers."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._probe: Celery | None = None

    def describe(self) -> list[Metric]:
        # nothing is read at registration; the names are this collector's alone
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "bayou_metrics_source_up", "1 when the scrape could read this source, else 0.", labels=["source"]
        )
        for source, read in (("broker", self._queue_depth), ("database", self._documents)):
            try:
                family = read()
            except Exception as exc:
                log.warning("metrics: could not read the %s: %s", source, type(exc).__name__)
                up.add_metric([source], 0.0)
                continue
            up.add_metric([source], 1.0)
            yield family
        yield up

    def _queue_depth(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "bayou_queue_depth", "Messages waiting in a queue, not yet taken by a worker.", labels=["queue"]
        )
        counts = waiting_counts(self._broker_probe(), self.settings, list(ALL_QUEUES))
        for queue in ALL_QUEUES:
            family.add_metric([queue], float(counts[queue]))
        return family

    def _documents(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily("bayou_documents", "Documents by status.", labels=["status"])
        with self.engine.connect() as connection:
            rows = connection.execute(select(Document.status, func.count()).group_by(Document.status))
            counts = {str(getattr(status, "value", status)): count for status, count in rows}
        # every status, zero included, so a rate or an alert on one never sees a gap
        for status in DocumentStatus:
            family.add_metric([status.value], float(counts.get(status.value, 0)))
        return family

    def _broker_probe(self) -> Celery:
        # an app of its own: the workers' app retries a lost broker forever, which would hang the scrape
        if self._probe is None:
            options = transport_options(self.settings)
            if not is_embedded(self.settings):  # the embedded broker is read from its file, not through kombu
                options |= {
                    "max_retries": 0,
                    "socket_connect_timeout": BROKER_PROBE_TIMEOUT_S,
                    "socket_timeout": BROKER_PROBE_TIMEOUT_S,
                }
            self._probe = Celery(
                "bayou-metrics",
                set_as_current=False,
                broker=broker_url(self.settings),
                broker_transport_options=options,
            )
        return self._probe
