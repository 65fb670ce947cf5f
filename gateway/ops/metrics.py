"""Prometheus metrics (prometheus-client): what is counted, with app names as labels, never keys."""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ..storage.types import CallCount

# Set (by `serve --workers`) before prometheus-client is imported, it makes every worker write
# its samples to files there, which /metrics merges.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The *_created series double the exposition and tell a scraper nothing it uses here.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Sub-millisecond buckets: the gateway's own overhead on a cache hit is tens of microseconds.
OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
)  # fmt: skip
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 600.0)


class Metrics:
    """Every metric the gateway exposes, in one registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Requests answered, by route class, status, app and cache outcome.",
            ["route", "status", "app", "cache"],
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time each request spent in the gateway itself, outside upstream.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.upstream_requests = Counter(
            "gateway_upstream_requests",
            "Requests sent to Parallel, by route class and status (0: no answer).",
            ["route", "status"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_seconds",
            "Time from sending a request to Parallel to its response headers.",
            ["route"],
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "gateway_upstream_retries", "Upstream attempts retried.", ["route"], registry=r
        )
        self.singleflight_waits = Counter(
            "gateway_singleflight_waits",
            "Cache misses that waited on another request's fetch of the same run.",
            registry=r,
        )
        self.replays = Counter(
            "gateway_replays",
            "Creates of apps whose key is replay or replay-only (and every create offline), by app "
            "and outcome: hit (answered from a recording) or miss (none finished).",
            ["app", "outcome"],
            registry=r,
        )
        self.errors = Counter(
            "gateway_errors", "Errors the gateway answered, by kind.", ["kind"], registry=r
        )
        self.storage_errors = Counter(
            "gateway_storage_errors",
            "Failed reads and writes of the store, by kind (read-only, disk-full, io, corrupt,"
            " busy, cannot-open, other).",
            ["kind"],
            registry=r,
        )
        self.storage_writable = Gauge(
            "gateway_storage_writable",
            "1 while the store takes writes; 0 from a failed write until one succeeds.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.storage_reachable = Gauge(
            "gateway_storage_reachable",
            "1 while a shared store (PostgreSQL) answers; 0 from a call that could not reach it "
            "until one does.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.accept_errors = Counter(
            "gateway_accept_errors",
            "Connections the listening socket failed to accept, by errno name (EMFILE, ...).",
            ["errno"],
            registry=r,
        )
        # With several workers (multiprocess mode): the store is one SQLite file, so the most
        # recent reading is right; each worker's memory layer is its own, so they add up.
        self.cache_entries = Gauge(
            "gateway_cache_entries",
            "Run inputs in the store (SQLite).",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.cache_bytes = Gauge(
            "gateway_cache_bytes",
            "Bytes of run inputs in the store.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.memory_entries = Gauge(
            "gateway_memory_entries",
            "Run inputs and final answers in the memory layers of live workers.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.memory_bytes = Gauge(
            "gateway_memory_bytes",
            "Bytes in the memory layers of live workers.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.billable_calls = Counter(
            "gateway_billable_calls",
            "Calls Parallel bills that succeeded upstream, by app, kind and processor ('' for "
            "none); counted as they are flushed to the store (billing.flush_interval).",
            ["app", "kind", "processor"],
            registry=r,
        )
        self.saved_calls = Counter(
            "gateway_saved_calls",
            "Calls the gateway answered in upstream's place (cache hits), by app, kind and "
            "processor; counted as they are flushed to the store.",
            ["app", "kind", "processor"],
            registry=r,
        )
        self._request_children: dict[tuple[str, int, str, str], Counter] = {}
        self._overhead_children: dict[str, Histogram] = {}
        self._upstream_children: dict[tuple[str, int], Counter] = {}
        self._upstream_latency_children: dict[str, Histogram] = {}

    def observe_request(
        self, route: str, status: int, app: str, cache: str, overhead: float
    ) -> None:
        """Count one answered request; label children are cached, as this runs on every hit."""
        key = (route, status, app, cache)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(
                route, str(status), app, cache
            )
        child.inc()
        histogram = self._overhead_children.get(route)
        if histogram is None:
            histogram = self._overhead_children[route] = self.overhead.labels(route)
        histogram.observe(overhead)

    def observe_upstream(self, route: str, status: int, seconds: float) -> None:
        """Count one upstream answer (status 0: none); label children cached, as above."""
        key = (route, status)
        child = self._upstream_children.get(key)
        if child is None:
            child = self._upstream_children[key] = self.upstream_requests.labels(route, str(status))
        child.inc()
        histogram = self._upstream_latency_children.get(route)
        if histogram is None:
            histogram = self._upstream_latency_children[route] = self.upstream_latency.labels(route)
        histogram.observe(seconds)

    def count_billing(self, counts: list[CallCount]) -> None:
        """Add a flushed batch of billing counts (gateway/billing/flush.py)."""
        for c in counts:
            labels = (c.app, c.kind, c.processor or "")
            if c.calls:
                self.billable_calls.labels(*labels).inc(c.calls)
            if c.saved_calls:
                self.saved_calls.labels(*labels).inc(c.saved_calls)

    def request_samples(self) -> list[tuple[dict[str, str], float]]:
        """The gateway_requests_total samples, every worker's where there are several."""
        registry = self.registry
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return [
            (sample.labels, sample.value)
            for metric in registry.collect()
            if metric.name == "gateway_requests"
            for sample in metric.samples
            if sample.name == "gateway_requests_total"
        ]

    def exposition(self) -> bytes:
        """The text format; with several workers, every worker's samples, merged."""
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
