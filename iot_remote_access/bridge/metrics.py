"""The bridge's Prometheus metrics, in a registry of its own (bridges may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Seconds from MQTT receipt to Pub/Sub's confirmation.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class BridgeMetrics:
    """Counters and gauges the bridge updates; ``registry`` is what /metrics serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "bridge_telemetry_received",
            "Telemetry messages received from the broker",
            ["qos"],
            registry=r,
        )
        self.published = Counter(
            "bridge_telemetry_published", "Telemetry messages Pub/Sub confirmed", registry=r
        )
        self.acked = Counter(
            "bridge_telemetry_acked",
            "QoS 1 telemetry messages acknowledged to the broker",
            registry=r,
        )
        self.failed = Counter(
            "bridge_telemetry_publish_failed",
            "Failed Pub/Sub publish attempts of telemetry (retried)",
            registry=r,
        )
        self.dead_lettered = Counter(
            "bridge_telemetry_dead_lettered",
            "Telemetry messages sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "bridge_telemetry_duplicates",
            "Telemetry Pub/Sub confirmed whose dedupKey this replica had already had "
            "confirmed (among its last 100,000): messages actually published twice",
            registry=r,
        )
        self.redelivered = Counter(
            "bridge_telemetry_redelivered",
            "Telemetry the broker sent again (MQTT DUP flag); most were never published",
            registry=r,
        )
        self.undeliverable = Counter(
            "bridge_telemetry_undeliverable",
            "Telemetry that neither its topic nor the dead-letter topic took (retried)",
            registry=r,
        )
        self.parked = Gauge(
            "bridge_telemetry_parked",
            "Undelivered telemetry acknowledged to the broker so that it stops holding "
            "back later acknowledgements (kept in memory and retried)",
            registry=r,
        )
        self.oldest = Gauge(
            "bridge_telemetry_oldest_unconfirmed_seconds",
            "Age of the oldest telemetry message not yet confirmed by Pub/Sub",
            registry=r,
        )
        self.dropped = Counter(
            "bridge_telemetry_dropped_qos0",
            "QoS 0 telemetry dropped because the in-flight limit was reached",
            registry=r,
        )
        self.inflight = Gauge(
            "bridge_telemetry_inflight",
            "Telemetry messages received and not yet confirmed",
            registry=r,
        )
        self.latency = Histogram(
            "bridge_telemetry_latency_seconds",
            "From MQTT receipt to Pub/Sub confirmation",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._commands_and_connection(r)

    def _commands_and_connection(self, r: CollectorRegistry) -> None:
        self.commands_received = Counter(
            "bridge_commands_received", "Commands received from Pub/Sub", registry=r
        )
        self.commands_delivered = Counter(
            "bridge_commands_delivered", "Commands the broker acknowledged (PUBACK)", registry=r
        )
        self.commands_dead_lettered = Counter(
            "bridge_commands_dead_lettered",
            "Commands sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.commands_failed = Counter(
            "bridge_commands_failed", "Commands nacked for redelivery", registry=r
        )
        self.commands_inflight = Gauge(
            "bridge_commands_inflight",
            "Commands published to the broker and not yet acknowledged",
            registry=r,
        )
        self.responses_received = Counter(
            "bridge_responses_received", "Command responses received from the broker", registry=r
        )
        self.responses_delivered = Counter(
            "bridge_responses_delivered", "Command responses Pub/Sub confirmed", registry=r
        )
        self.responses_dead_lettered = Counter(
            "bridge_responses_dead_lettered",
            "Command responses sent to the responses dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.responses_failed = Counter(
            "bridge_responses_failed",
            "Command response publishes that failed (retried)",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "bridge_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.mqtt_connects = Counter(
            "bridge_mqtt_connects", "Successful connections to the broker", registry=r
        )
