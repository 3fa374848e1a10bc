"""Prometheus metrics in the text exposition format (0.0.4), kept in memory, labelled by key *name*.

Counters: requests by key, endpoint and status code; images served, replayed (answered again from the
idempotency record, not billed) and refused (by reason) per key. Gauges: budget used and budget per key.
Histogram: request latency per endpoint.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Thread-safe counters and a latency histogram; `render()` writes the exposition text.

    Args:
        gauges: called at render time for per-key gauges: returns {metric name: {key name: value}}.
    """

    def __init__(self, gauges: Callable[[], dict[str, dict[str, float]]] | None = None) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._hist: dict[Labels, list[int]] = {}
        self._hist_sum: dict[Labels, float] = defaultdict(float)
        self._gauges = gauges

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counters[name][tuple(sorted(labels.items()))] += value

    def observe_latency(self, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            buckets = self._hist.setdefault(key, [0] * (len(LATENCY_BUCKETS) + 1))
            buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._hist_sum[key] += seconds

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 if never counted); for tests and the benchmark."""
        with self._lock:
            return self._counters[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} counter"]
                lines += [f"{name}{_labels(key)} {_number(v)}" for key, v in sorted(series.items())]
            if self._hist:
                hist = "activethief_request_duration_seconds"
                lines += [f"# HELP {hist} {_HELP[hist]}", f"# TYPE {hist} histogram"]
                for key, buckets in sorted(self._hist.items()):
                    total = 0
                    for bound, hits in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
                        total += hits
                        le = "+Inf" if bound == float("inf") else repr(bound)
                        lines.append(f"{hist}_bucket{_labels((*key, ('le', le)))} {total}")
                    lines.append(f"{hist}_sum{_labels(key)} {_number(self._hist_sum[key])}")
                    lines.append(f"{hist}_count{_labels(key)} {total}")
        for name, by_key in sorted((self._gauges() if self._gauges else {}).items()):
            lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} gauge"]
            lines += [f"{name}{_labels((('key', key),))} {_number(v)}" for key, v in sorted(by_key.items())]
        return "\n".join(lines) + "\n"


_HELP = {
    "activethief_requests_total": "HTTP requests by key name, endpoint and status code.",
    "activethief_images_served_total": "Images answered and billed, by key name.",
    "activethief_images_replayed_total": "Images answered again from the idempotency record (not billed).",
    "activethief_images_refused_total": "Images refused, by key name and reason.",
    "activethief_request_duration_seconds": "Request latency in seconds, by endpoint.",
    "activethief_budget_used_images": "Images billed to each key so far (persistent).",
    "activethief_budget_images": "Each key's budget in images (keys without a budget are omitted).",
}


def _labels(pairs: Labels) -> str:
    if not pairs:
        return ""
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs
    )
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
