"""The bridge service: wires the broker link, the two directions, health and metrics."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from iot_remote_access.bridge.commands import CommandRelay
from iot_remote_access.bridge.health import HealthServer
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.mqtt_link import MqttLink
from iot_remote_access.bridge.settings import BridgeSettings
from iot_remote_access.bridge.telemetry import Inbound, TelemetryForwarder

log = logging.getLogger("iot_remote_access.bridge")


def make_publisher(settings: BridgeSettings) -> Any:
    """An ordered publisher that fails fast: no retries inside the client, flow control
    that refuses (instead of buffering) past its limits.

    With ordering on, the client would otherwise retry transient errors forever,
    invisibly; the bridge retries itself (TelemetryForwarder), so every failure is
    counted, shows in readiness and logs, and the thing's key is resumed in order.
    """
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1.types import (
        BatchSettings,
        LimitExceededBehavior,
        PublisherOptions,
        PublishFlowControl,
    )

    return pubsub_v1.PublisherClient(
        batch_settings=BatchSettings(max_messages=100, max_bytes=1_000_000, max_latency=0.005),
        publisher_options=PublisherOptions(
            enable_message_ordering=True,
            flow_control=PublishFlowControl(
                message_limit=2 * settings.max_inflight + 2 * settings.max_inflight_commands,
                byte_limit=2 * settings.max_inflight_bytes,
                limit_exceeded_behavior=LimitExceededBehavior.ERROR,
            ),
            retry=None,
            timeout=settings.publish_timeout_seconds,
        ),
    )


class BridgeService:
    """One bridge replica. ``start()`` returns at once; ``stop()`` drains; ``run()`` does both.

    ``publisher`` and ``subscriber`` default to Google Cloud clients (which honour
    ``PUBSUB_EMULATOR_HOST``).
    """

    def __init__(
        self, settings: BridgeSettings, *, publisher: Any = None, subscriber: Any = None
    ) -> None:
        from google.cloud import pubsub_v1

        self.settings = settings
        self.metrics = BridgeMetrics()
        self.publisher = publisher or make_publisher(settings)
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.draining = False
        self._stopped = threading.Event()
        self.link = MqttLink(settings, self.metrics, self._on_telemetry)
        self.telemetry = TelemetryForwarder(
            self.publisher,
            topic_path=settings.topic_path(settings.pubsub_telemetry_topic),
            dead_letter_path=settings.topic_path(settings.pubsub_telemetry_dead_letter_topic),
            template=settings.telemetry_topic,
            thing_name_pattern=settings.thing_name_pattern,
            metrics=self.metrics,
            is_current=self.link.is_current,
            max_inflight=settings.max_inflight,
            max_inflight_bytes=settings.max_inflight_bytes,
        )
        self.commands = CommandRelay(
            self.subscriber,
            self.publisher,
            self.link,
            subscription_path=settings.commands_subscription_path,
            dead_letter_path=settings.topic_path(settings.pubsub_commands_dead_letter_topic),
            template=settings.commands_topic,
            thing_name_pattern=settings.thing_name_pattern,
            metrics=self.metrics,
            max_inflight=settings.max_inflight_commands,
        )
        self.http = HealthServer(
            settings.http_host,
            settings.http_port,
            registry=self.metrics.registry,
            live=self.live,
            ready=self.ready,
        )

    # -- probes -------------------------------------------------------------------

    def live(self) -> tuple[bool, dict[str, Any]]:
        checks = {"commandsThread": self.commands.alive, "stopped": self._stopped.is_set()}
        return checks["commandsThread"] and not checks["stopped"], checks

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks = {
            "mqttConnected": self.link.connected,
            "mqttSubscribed": self.link.subscribed,
            "commandsStreaming": self.commands.streaming,
            "draining": self.draining,
        }
        ok = checks["mqttConnected"] and checks["mqttSubscribed"] and not self.draining
        return bool(ok and checks["commandsStreaming"]), checks

    # -- telemetry -----------------------------------------------------------------

    def _on_telemetry(self, message: Inbound) -> None:
        self.metrics.received.labels(qos=str(message.qos)).inc()
        if message.dup:
            self.metrics.duplicates.inc()
        if self.draining:
            return  # not acknowledged: the broker redelivers it to this session
        if not self.telemetry.submit(message, lambda: self._done(message)):
            return  # QoS 0 over the limit: dropped (counted)

    def _done(self, message: Inbound) -> None:
        sent = self.link.sequencer.done(message.ticket)
        if sent:
            self.metrics.acked.inc(sent)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.http.start()
        self.link.start()
        self.commands.start()
        log.info(
            "bridge started",
            extra={
                "subscription": self.settings.subscription,
                "telemetryTopic": self.settings.topic_path(self.settings.pubsub_telemetry_topic),
                "commandsSubscription": self.settings.commands_subscription_path,
                "httpPort": self.http.port,
            },
        )

    def stop(self, *, drain: bool = True) -> bool:
        """Stop taking messages, finish what is in flight (up to the drain timeout), disconnect.

        Returns False when the drain timed out; what was left is acknowledged to
        nobody, so the broker and Pub/Sub redeliver it.
        """
        self.draining = True
        timeout = self.settings.drain_timeout_seconds if drain else 0.0
        commands_done = self.commands.stop(timeout)
        telemetry_done = self.telemetry.wait_idle(timeout)
        self.telemetry.close()
        self.link.stop()
        self.publisher.stop()
        self.http.stop()
        self._stopped.set()
        drained = commands_done and telemetry_done
        log.info(
            "bridge stopped", extra={"drained": drained, "telemetryLeft": self.telemetry.inflight()}
        )
        return drained

    def run(self) -> int:
        """Run until SIGTERM or SIGINT, then drain. Returns the exit code."""
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            log.info("stopping", extra={"signal": signal.Signals(signum).name})
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.start()
        stop.wait()
        return 0 if self.stop() else 1
