"""Prometheus metrics (via prometheus_client), kept in memory per service, labelled by key *name*.

Counters: requests by key, endpoint and status code; images served, replayed (answered again from the
idempotency record, not billed) and refused (by reason) per key; keys PRADA flagged. Gauges: budget used
and budget per key, read from the state file at scrape time; PRADA's flag and statistic per watched key.
Histogram: request latency per endpoint. Each service has its own registry, so several services in one
process (tests, benchmarks) never share counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
DISCONNECTED = "499"  # the `code` label of a request whose client went away first (nginx's convention)

HELP = {
    "activethief_requests_total": "HTTP requests by key name, endpoint and status code (499: client left).",
    "activethief_images_served_total": "Images answered and billed, by key name.",
    "activethief_images_replayed_total": "Images answered again from the idempotency record (not billed).",
    "activethief_images_refused_total": "Images refused, by key name and reason.",
    "activethief_request_duration_seconds": "Request latency in seconds, by endpoint.",
    "activethief_budget_used_images": "Images billed to each key so far (persistent).",
    "activethief_budget_images": "Each key's budget in images (keys without a budget are omitted).",
    "activethief_prada_flags_total": "Keys flagged by PRADA as likely model-extraction clients, by key name.",
    "activethief_prada_flagged": "1 once PRADA flagged the key (keys watched with `prada`), else 0.",
    "activethief_prada_statistic": "The latest Shapiro-Wilk W of PRADA's distances, per watched key.",
}
_COUNTER_LABELS = {
    "activethief_requests_total": ("key", "endpoint", "code"),
    "activethief_images_served_total": ("key",),
    "activethief_images_replayed_total": ("key",),
    "activethief_images_refused_total": ("key", "reason"),
    "activethief_prada_flags_total": ("key",),
}
KeyGauges = Callable[[], dict[str, dict[str, float]]]


class _KeyGaugeCollector(Collector):
    """Per-key gauges computed at scrape time (the state file is the source of truth)."""

    def __init__(self, gauges: KeyGauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, by_key in sorted(self._gauges().items()):
            family = GaugeMetricFamily(name, HELP.get(name, name), labels=["key"])
            for key, value in sorted(by_key.items()):
                family.add_metric([key], value)
            yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # computed at scrape time only: never call the state file at registration


class Metrics:
    """Thread-safe counters and a latency histogram in a private registry; `render()` writes the text.

    Args:
        gauges: called at render time for per-key gauges: returns {metric name: {key name: value}}.
    """

    def __init__(self, gauges: KeyGauges | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = {
            name: Counter(name, HELP[name], labels, registry=self.registry)
            for name, labels in _COUNTER_LABELS.items()
        }
        self._latency = Histogram(
            "activethief_request_duration_seconds",
            HELP["activethief_request_duration_seconds"],
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if gauges is not None:
            self.registry.register(_KeyGaugeCollector(gauges))

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add `value` to the counter `name` (one of HELP's counters) with these labels."""
        self._counters[name].labels(**labels).inc(value)

    def observe_latency(self, seconds: float, **labels: str) -> None:
        self._latency.labels(**labels).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 if never counted); for tests and the benchmark."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        return generate_latest(self.registry)
