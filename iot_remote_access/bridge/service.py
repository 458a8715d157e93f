"""The bridge service: wires the broker link, the two directions, health and metrics."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.cause_log import CauseLog
from iot_remote_access.bridge.commands import CommandRelay
from iot_remote_access.bridge.health import HealthServer
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.mqtt_link import MqttLink
from iot_remote_access.bridge.pubsub_rpc import grpc_publish
from iot_remote_access.bridge.responses import ResponseInbound, ResponseRelay
from iot_remote_access.bridge.settings import BridgeSettings
from iot_remote_access.bridge.telemetry import Inbound, TelemetryForwarder

log = logging.getLogger("iot_remote_access.bridge")


def make_publisher(settings: BridgeSettings) -> Any:
    """The Pub/Sub client: its channel carries telemetry (pubsub_rpc.grpc_publish, the
    bridge's own batching); the client itself publishes dead-lettered commands.

    It fails fast: no retries inside the client, flow control that refuses (instead
    of buffering) past its limits; the bridge retries itself, so every failure is
    counted and logged.
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
        self._causes = CauseLog(log, settings.log_interval_seconds)
        self._received = {qos: self.metrics.received.labels(qos=str(qos)) for qos in (0, 1, 2)}
        self.responses: ResponseRelay | None = None
        self.link = MqttLink(
            settings,
            self.metrics,
            self._on_telemetry,
            self._on_response if settings.responses_on else None,
        )
        if settings.responses_on:
            self.responses = ResponseRelay(
                self.publisher,
                topic_path=settings.topic_path(settings.pubsub_responses_topic),
                dead_letter_path=settings.topic_path(settings.responses_dead_letter_topic),
                template=settings.responses_topic,
                thing_name_pattern=settings.thing_name_pattern,
                metrics=self.metrics,
                settle=self._settle,
                is_current=self.link.is_current,
                log_interval=settings.log_interval_seconds,
            )
        self.telemetry = TelemetryForwarder(
            grpc_publish(self.publisher, settings.publish_timeout_seconds),
            topic_path=settings.topic_path(settings.pubsub_telemetry_topic),
            dead_letter_path=settings.topic_path(settings.pubsub_telemetry_dead_letter_topic),
            template=settings.telemetry_topic,
            thing_name_pattern=settings.thing_name_pattern,
            metrics=self.metrics,
            is_current=self.link.is_current,
            max_inflight=settings.max_inflight,
            max_inflight_bytes=settings.max_inflight_bytes,
            log_interval=settings.log_interval_seconds,
            settle=self._settle,
        )
        self.metrics.oldest.set_function(self.telemetry.oldest_age)
        self._watchdog = threading.Thread(target=self._watch, name="bridge-watchdog", daemon=True)
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
            log_interval=settings.log_interval_seconds,
            responses_template=settings.responses_topic if settings.responses_on else None,
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
        """Ready: connected, subscribed, commands streaming, not draining, and Pub/Sub takes
        telemetry: no message has waited longer than ``stall_seconds`` for it."""
        oldest = self.telemetry.oldest_age()
        checks = {
            "mqttConnected": self.link.connected,
            "mqttSubscribed": self.link.subscribed,
            "commandsStreaming": self.commands.streaming,
            "draining": self.draining,
            "pubsubPublishing": oldest <= self.settings.stall_seconds,
            "oldestUnconfirmedSeconds": round(oldest, 1),
            "parked": self.telemetry.parked(),
        }
        ok = (
            checks["mqttConnected"]
            and checks["mqttSubscribed"]
            and checks["commandsStreaming"]
            and checks["pubsubPublishing"]
            and not self.draining
        )
        return bool(ok), checks

    # -- telemetry -----------------------------------------------------------------

    def _on_telemetry(self, message: Inbound) -> None:
        # While draining too: what the broker had queued for this session comes now.
        self._received[message.qos].inc()
        if message.dup:
            self.metrics.redelivered.inc()
        self.telemetry.submit(message)  # False: QoS 0 over the limit, dropped (counted)

    def _on_response(self, message: ResponseInbound) -> None:
        if self.responses is not None:
            self.responses.submit(message)

    def _settle(self, tickets: list[Ticket]) -> None:
        """Delivered (or dead-lettered): acknowledge what is now due to the broker."""
        sent = self.link.sequencer.done_many(tickets)
        if sent:
            self.metrics.acked.inc(sent)

    def _watch(self) -> None:
        """Park what holds back later PUBACKs longer than the stall bound (see ack_sequencer)."""
        period = min(0.5, self.settings.stall_seconds / 4)
        while not self._stopped.wait(period):
            room = self.settings.max_parked_messages - self.telemetry.parked()
            if room <= 0:
                continue
            sequencer = self.link.sequencer
            stalled = sequencer.stalled(self.settings.stall_seconds, room)
            if not stalled:
                continue
            parked, sent = self.telemetry.park(stalled, sequencer.release)
            self.metrics.acked.inc(sent)
            if parked:
                self._causes.report(
                    "undelivered telemetry held back later acknowledgements: parked it",
                    f"waited over {self.settings.stall_seconds:g} s",
                    parked=self.telemetry.parked(),
                    released=sent,
                )

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.http.start()
        self.link.start()
        self.commands.start()
        self._watchdog.start()
        log.info(
            "bridge started",
            extra={
                "subscription": self.settings.subscription,
                "clientId": self.settings.mqtt_client_id,
                "telemetryTopic": self.settings.topic_path(self.settings.pubsub_telemetry_topic),
                "commandsSubscription": self.settings.commands_subscription_path,
                "responsesTopic": (
                    self.settings.topic_path(self.settings.pubsub_responses_topic)
                    if self.responses
                    else None
                ),
                "httpPort": self.http.port,
            },
        )

    def stop(self, *, drain: bool = True) -> bool:
        """Drain, then disconnect: leave the shared subscription, take and deliver what the
        broker had queued for this session until it is quiet, finish the commands in flight,
        then end the session (expiry 0). Bounded by ``drain_timeout_seconds``.

        Returns False when the drain did not finish: the session then stays on the
        broker, with what is unacknowledged, for a replica with the same client id.
        """
        self.draining = True
        timeout = self.settings.drain_timeout_seconds if drain else 0.0
        deadline = time.monotonic() + timeout
        unsubscribed = drain and self.link.unsubscribe(min(timeout, 10.0))
        commands_done = self.commands.stop(max(0.0, deadline - time.monotonic()))
        telemetry_done = drain and self._wait_quiet(deadline)
        self.telemetry.close()
        if self.responses is not None:
            self.responses.stop()
        drained = unsubscribed and commands_done and telemetry_done
        self.link.stop(end_session=drained)
        self.publisher.stop()
        self.http.stop()
        self._stopped.set()
        log.info(
            "bridge stopped",
            extra={
                "drained": drained,
                "sessionEnded": drained,
                "telemetryLeft": self.telemetry.inflight(),
                "unacknowledged": self.link.sequencer.pending(),
            },
        )
        return drained

    def _wait_quiet(self, deadline: float) -> bool:
        """Until nothing is in flight or unacknowledged and no message came for a while."""
        quiet = self.settings.drain_quiet_seconds
        while True:
            now = time.monotonic()
            idle = not self.telemetry.inflight() and not self.link.sequencer.pending()
            if idle and now - self.link.last_message >= quiet:
                return True
            if now >= deadline:
                return False
            time.sleep(0.05)

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
