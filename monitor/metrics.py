"""
The hub's counters, in one Prometheus registry per hub (not the process-wide
default one, so tests and several hubs in one process stay apart).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """
    Every number the hub exports at C{/metrics}.
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.collected = Counter(
            "monitor_posts_collected", "Posts received from a source.", ["source"], registry=r
        )
        self.malformed = Counter(
            "monitor_posts_malformed", "Payloads from a source that could not be read.", ["source"], registry=r
        )
        self.unmatched = Counter(
            "monitor_posts_unmatched", "Posts dropped because they match no topic.", ["source"], registry=r
        )
        self.stored = Counter(
            "monitor_posts_stored", "Matched posts committed to the store.", ["source"], registry=r
        )
        self.duplicates = Counter(
            "monitor_posts_duplicate", "Committed posts the store already had (not written twice).", registry=r
        )
        self.queue_depth = Gauge("monitor_queue_depth", "Posts waiting for analysis.", registry=r)
        self.queue_blocked = Gauge(
            "monitor_queue_blocked_producers", "Collectors waiting for room in the queue.", registry=r
        )
        self.analysis_seconds = Histogram(
            "monitor_analysis_seconds", "Time to analyse one batch.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.store_seconds = Histogram(
            "monitor_store_seconds", "Time to store one batch.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "monitor_ingest_to_store_seconds",
            "From receipt by the hub to stored, per post.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter("monitor_store_errors", "Failed store attempts (retried).", registry=r)
        self.source_up = Gauge(
            "monitor_source_up", "1 while a source is collecting normally.", ["source", "kind"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
