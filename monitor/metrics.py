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
        self.collected = Counter("monitor_posts_collected", "Posts received from a source.", ["source"], registry=r)
        self.malformed = Counter(
            "monitor_posts_malformed", "Payloads from a source that could not be read.", ["source"], registry=r
        )
        self.unmatched = Counter(
            "monitor_posts_unmatched", "Posts dropped because they match no topic.", ["source"], registry=r
        )
        self.stored = Counter("monitor_posts_stored", "Matched posts committed to the store.", ["source"], registry=r)
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
        # Analysis nodes (monitor.nodes).
        self.nodes_connected = Gauge("monitor_nodes_connected", "Analysis nodes connected and registered.", registry=r)
        self.nodes_refused = Counter(
            "monitor_nodes_refused", "Node connections refused at the handshake.", ["reason"], registry=r
        )
        self.node_in_flight = Gauge(
            "monitor_node_batches_in_flight", "Batches sent to a node and not answered yet.", ["node"], registry=r
        )
        self.node_batches = Counter("monitor_node_batches", "Batches a node analysed.", ["node"], registry=r)
        self.node_posts = Counter("monitor_node_posts", "Posts a node analysed.", ["node"], registry=r)
        self.node_errors = Counter(
            "monitor_node_errors", "Batches a node failed, timed out or lost (each sent again).", ["node"], registry=r
        )
        self.node_seconds = Histogram(
            "monitor_node_batch_seconds",
            "Round trip of one batch to a node.",
            ["node"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.analysed_locally = Counter(
            "monitor_posts_analysed_locally", "Posts the hub analysed itself (no node, or a node failed).", registry=r
        )
        self.rate_limit_remaining = Gauge(
            "monitor_source_rate_limit_remaining",
            "Requests a source may still make in the network's current rate-limit window.",
            ["source"],
            registry=r,
        )
        # Alerts: rule hits, incident events, deliveries.
        self.alert_hits = Counter(
            "monitor_alert_hits", "Posts or windows that matched an alert rule.", ["rule"], registry=r
        )
        self.incidents = Counter(
            "monitor_incidents", "Incident events (opened, escalated, resolved...).", ["rule", "event"], registry=r
        )
        self.incidents_open = Gauge("monitor_incidents_open", "Incidents open now.", registry=r)
        self.notifications = Counter(
            "monitor_notifications", "Notification attempts by outcome.", ["channel", "outcome"], registry=r
        )
        self.notification_seconds = Histogram(
            "monitor_notification_seconds", "Time of one delivery attempt.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.reactor_stall = Histogram(
            "monitor_reactor_stall_seconds",
            "How long the reactor thread was kept busy past each 20 ms heartbeat (see monitor.lag).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.outbox_pending = Gauge(
            "monitor_outbox_pending", "Notifications waiting for delivery.", ["channel"], registry=r
        )
        self.channel_up = Gauge(
            "monitor_channel_up", "1 unless the receiver disabled the channel.", ["channel", "kind"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
