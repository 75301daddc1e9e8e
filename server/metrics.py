"""Prometheus metrics of the lookup service, from `prometheus_client`: request latency by route,
requests by route and status, entity lookups by feature and consumer, and lookup time by view.

A lookup reads all its views in one PostgreSQL statement, so a view's lookup time is the time of
the lookups that read it (the statement and shaping its answer, not parsing or writing JSON); the
views read alone show what each costs.

With several workers (`featurestore serve --workers 2`) each worker is a process of its own, and
a scrape reaches whichever worker accepts it. `featurestore serve` therefore sets
PROMETHEUS_MULTIPROC_DIR (a folder under the project's `.featurestore/`, emptied at start) before
the workers start: each worker writes its counts to files there, and every scrape adds up all
workers' (prometheus_client's multiprocess mode). Without it (one process, tests), counts stay in
the process.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["MULTIPROCESS_ENV", "Metrics", "prepare_multiprocess"]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def prepare_multiprocess(folder: Path) -> None:
    """Empty `folder` and name it in the environment, so that the workers started after this (and
    inheriting it) share their counts there. Call it before anything imports prometheus_client."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(folder)


class Metrics:
    """The service's metric families, on a registry of its own."""

    def __init__(self) -> None:
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Histogram

        prometheus_client.disable_created_metrics()  # no *_created series: they only double the output
        self.registry = CollectorRegistry(auto_describe=True)
        self._latency = Histogram("featurestore_request_seconds", "Request latency by route.", ["route"],
                                  buckets=_BUCKETS, registry=self.registry)
        self._requests = Counter("featurestore_requests", "Requests by route and status.", ["route", "status"],
                                 registry=self.registry)
        self._lookups = Counter("featurestore_lookups", "Entity lookups by feature and consumer.",
                                ["feature", "consumer"], registry=self.registry)
        self._view_seconds = Histogram("featurestore_lookup_seconds", "Time of the lookups that read a view.",
                                       ["view"], buckets=_BUCKETS, registry=self.registry)
        # The children of a request's features and views, per distinct (features, consumer) and views:
        # resolved once.
        self._lookup_children: dict[tuple[tuple[str, ...], str], list[Any]] = {}
        self._view_children: dict[tuple[str, ...], list[Any]] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        self._latency.labels(route).observe(seconds)
        self._requests.labels(route, str(status)).inc()

    def lookup(self, features: tuple[str, ...], consumer: str, entities: int, views: tuple[str, ...],
               seconds: float) -> None:
        """A lookup of `entities` entities that read `features` of `views` in `seconds`."""
        counters = self._lookup_children.get((features, consumer))
        if counters is None:
            counters = self._lookup_children[(features, consumer)] = [self._lookups.labels(feature, consumer)
                                                                       for feature in features]
        for counter in counters:
            counter.inc(entities)
        timers = self._view_children.get(views)
        if timers is None:
            timers = self._view_children[views] = [self._view_seconds.labels(view) for view in views]
        for timer in timers:
            timer.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition: every worker's counts in multiprocess mode, else this process's."""
        from prometheus_client import CollectorRegistry, generate_latest

        folder = os.environ.get(MULTIPROCESS_ENV)
        if not folder:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
        return generate_latest(registry)
