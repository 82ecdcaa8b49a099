"""The proxy's Prometheus metrics, in a registry of its own (served at GET /metrics).

The stage histogram is the KV-transfer view: how long each request spent in
tokenize, prefill, waiting for the KV-ready notifications, the decoder's time to
first token, the end-to-end TTFT seen by the client, and the total.
"""

from __future__ import annotations

import pdtui.constants as C

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGES = C.TIMED_STAGES
OUTCOMES = ("ok", "client_error", "backend_error", "timeout", "no_backend", "cancelled")

_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"),
)


class ProxyMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "pdtui_proxy_requests", "Client requests by route and outcome",
            ["route", "outcome"], registry=r,
        )
        self.stage_seconds = Histogram(
            "pdtui_proxy_stage_seconds", "Per-request time in each stage", ["stage"],
            buckets=_BUCKETS, registry=r,
        )
        self.backend_requests = Counter(
            "pdtui_proxy_backend_requests", "Requests sent to each backend, by outcome",
            ["role", "backend", "outcome"], registry=r,
        )
        self.backend_outstanding = Gauge(
            "pdtui_proxy_backend_outstanding", "Requests in flight per backend",
            ["role", "backend"], registry=r,
        )
        self.backend_healthy = Gauge(
            "pdtui_proxy_backend_healthy", "1 healthy, 0 unhealthy, -1 not checked yet",
            ["role", "backend"], registry=r,
        )
        self.kv_notifications = Counter(
            "pdtui_proxy_kv_notifications",
            "ProxyNotif messages: matched a waiter, early (before its waiter), late (after the "
            "request was done), malformed or other PD messages",
            ["kind"], registry=r,
        )
        self.in_flight = Gauge(
            "pdtui_proxy_requests_in_flight", "Client requests being served", registry=r
        )
        # Read when /metrics is scraped, not kept up to date (two locked updates) per request.
        self.requests_in_flight = 0
        self.in_flight.set_function(lambda: self.requests_in_flight)
        # Label children looked up once here, not per request: prometheus_client's
        # labels() takes a lock and builds a tuple key on every call.
        self.stage_children = {stage: self.stage_seconds.labels(stage) for stage in STAGES}
        self.request_children: dict = {}  # made on first use: no zero series
        self.kv_children = {kind: self.kv_notifications.labels(kind)
                            for kind in ("matched", "early", "late", "malformed", "other")}

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_children[stage].observe(seconds)

    def count_request(self, route: str, outcome: str) -> None:
        child = self.request_children.get((route, outcome))
        if child is None:
            child = self.request_children[(route, outcome)] = self.requests.labels(route, outcome)
        child.inc()

    def count_notification(self, kind: str) -> None:
        self.kv_children[kind].inc()

    def backend(self, role: str, url: str, outstanding=None) -> BackendMetrics:
        """`outstanding`: a callable giving the backend's requests in flight, read at each
        scrape (the count lives on the Backend)."""
        return BackendMetrics(self, role, url, outstanding)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BackendMetrics:
    """One backend's label children, made once when the proxy starts."""

    __slots__ = ("_metrics", "_role", "_url", "outstanding", "healthy", "_requests")

    def __init__(self, metrics: ProxyMetrics, role: str, url: str, outstanding=None) -> None:
        self._metrics, self._role, self._url = metrics, role, url
        self.outstanding = metrics.backend_outstanding.labels(role, url)
        if outstanding is not None:
            self.outstanding.set_function(outstanding)
        self.healthy = metrics.backend_healthy.labels(role, url)
        self._requests: dict = {}  # outcome -> child, made on first use (no zero series)

    def count(self, outcome: str) -> None:
        child = self._requests.get(outcome)
        if child is None:
            child = self._requests[outcome] = self._metrics.backend_requests.labels(
                self._role, self._url, outcome)
        child.inc()
