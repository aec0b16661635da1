"""Prometheus metrics, one registry per app so that several apps in one process (tests) never clash."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
