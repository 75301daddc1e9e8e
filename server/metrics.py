"""Prometheus text metrics, kept in process: request latency, requests by status, lookups by feature.

Small enough to write here rather than add a client library: three metric families, one lock.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter

__all__ = ["Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency: dict[str, list[int]] = {}  # route → counts per bucket (+Inf last), cumulated when rendered
        self._latency_sum: Counter[str] = Counter()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._lookups: Counter[tuple[tuple[str, ...], str]] = Counter()  # (features, consumer), expanded when rendered

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            buckets = self._latency.get(route)
            if buckets is None:
                buckets = self._latency[route] = [0] * (len(_BUCKETS) + 1)
            buckets[bisect_left(_BUCKETS, seconds)] += 1
            self._latency_sum[route] += seconds
            self._requests[(route, status)] += 1

    def lookups(self, features: tuple[str, ...], consumer: str, entities: int) -> None:
        with self._lock:
            self._lookups[(features, consumer)] += entities

    def render(self) -> str:
        lines = ["# HELP featurestore_request_seconds Request latency by route.",
                 "# TYPE featurestore_request_seconds histogram"]
        with self._lock:
            for route, counts in sorted(self._latency.items()):
                buckets = [sum(counts[:index + 1]) for index in range(len(counts))]
                label = f'route="{_escape(route)}"'
                for bound, count in zip((*_BUCKETS, "+Inf"), buckets):
                    lines.append(f'featurestore_request_seconds_bucket{{{label},le="{bound}"}} {count}')
                lines.append(f"featurestore_request_seconds_sum{{{label}}} {self._latency_sum[route]}")
                lines.append(f"featurestore_request_seconds_count{{{label}}} {buckets[-1]}")
            lines += ["# HELP featurestore_requests_total Requests by route and status.",
                      "# TYPE featurestore_requests_total counter"]
            for (route, status), count in sorted(self._requests.items()):
                lines.append(f'featurestore_requests_total{{route="{_escape(route)}",status="{status}"}} {count}')
            lines += ["# HELP featurestore_lookups_total Entity lookups by feature and consumer.",
                      "# TYPE featurestore_lookups_total counter"]
            lookups: Counter[tuple[str, str]] = Counter()
            for (features, consumer), count in self._lookups.items():
                for feature in features:
                    lookups[(feature, consumer)] += count
            for (feature, consumer), count in sorted(lookups.items()):
                labels = f'feature="{_escape(feature)}",consumer="{_escape(consumer)}"'
                lines.append(f"featurestore_lookups_total{{{labels}}} {count}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
