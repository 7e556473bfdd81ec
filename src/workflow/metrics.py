"""Prometheus metrics (`GET /metrics`, text format): requests by face, service and status, IANs by
outcome, and backlogs read from the database at scrape time. One registry per App, so several servers
in one process (tests) never share counters."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("wfm_requests", "Requests answered, by face (dimse, http), service and status",
                                ["face", "service", "status"], registry=self.registry)
        self.ians = Counter("wfm_ians_received", "IANs received, by outcome (stored, already stored, rejected, "
                            "conflict, failed)", ["outcome"], registry=self.registry)
        self.latency = Histogram("wfm_request_seconds", "Time to answer a request, by face and service",
                                 ["face", "service"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self._gauges: list[tuple[str, str, Callable[[], dict[tuple, float]], tuple[str, ...]]] = []
        self.registry.register(_Gauges(self._gauges))

    def gauge(self, name: str, text: str, read: Callable[[], dict[tuple, float]], labels: tuple[str, ...] = ()) -> None:
        """A value read when scraped: `read()` returns {label values: value}."""
        self._gauges.append((name, text, read, labels))

    def observe(self, face: str, service: str, status: str, seconds: float) -> None:
        self.requests.labels(face, service, status).inc()
        self.latency.labels(face, service).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Gauges:
    def __init__(self, gauges) -> None:
        self.gauges = gauges

    def describe(self):
        return []

    def collect(self):
        for name, text, read, labels in self.gauges:
            family = GaugeMetricFamily(name, text, labels=list(labels))
            try:
                values = read()
            except Exception:  # noqa: BLE001 - a database down must not break the scrape of the rest
                continue
            for key, value in values.items():
                family.add_metric(list(key), value)
            yield family
