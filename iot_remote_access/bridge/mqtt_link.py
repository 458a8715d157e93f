"""The bridge's broker connection: MQTT 5 over mutual TLS, a persistent session, manual acks.

- Identity: the client certificate (its CN is the bridge's broker identity).
- Session: ``clean_start=False`` and a session expiry, so unacknowledged
  messages survive a restart of the bridge or of the broker and are redelivered.
- Backpressure: the CONNECT's Receive Maximum is the in-flight limit, so the
  broker never has more unacknowledged QoS 1 messages out to the bridge.
- Reconnects: paho's loop reconnects with exponential backoff
  (``reconnect_min_seconds`` doubling up to ``reconnect_max_seconds``).
- Clean drain (:meth:`MqttLink.unsubscribe`, then :meth:`MqttLink.stop` with
  ``end_session``): the shared subscription goes first, so the broker routes new
  messages to the other replicas; what it had already queued for this session keeps
  coming and is delivered; the DISCONNECT then sets the session expiry to 0, so no
  session keeps a share of the subscription. After SIGKILL the session stays (expiry
  > 0) and a replacement with the same client id resumes it.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from iot_remote_access.bridge.ack_sequencer import AckSequencer, Ticket
from iot_remote_access.bridge.commands import PubackCallback
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.responses import ResponseInbound
from iot_remote_access.bridge.settings import BridgeSettings
from iot_remote_access.bridge.telemetry import Inbound
from iot_remote_access.core.shared_subscription import topic_filter

log = logging.getLogger("iot_remote_access.bridge.mqtt")
_MISSING = object()


class MqttLink:
    """Owns the paho client; hands every telemetry delivery to ``on_message`` and, with the
    responses path on, every command response to ``on_response``."""

    def __init__(
        self,
        settings: BridgeSettings,
        metrics: BridgeMetrics,
        on_message: Callable[[Inbound], None],
        on_response: Callable[[ResponseInbound], None] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._on_message_cb = on_message
        self._on_response_cb = on_response
        #: What the bridge subscribes to: telemetry, and responses when that path is on.
        self.subscriptions = [settings.subscription]
        if on_response is not None:
            self.subscriptions.append(settings.responses_subscription)
        self._connected = threading.Event()
        self.subscribed = False
        self.draining = False
        self._unsubscribed = threading.Event()
        #: monotonic time of the last telemetry delivery (to see when the broker is done).
        self.last_message = time.monotonic()
        self._acks_lock = threading.Lock()
        self._pending: dict[int, PubackCallback] = {}
        self._early: dict[int, str | None] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.tls_set_context(_tls_context(settings))
        client.reconnect_delay_set(settings.reconnect_min_seconds, settings.reconnect_max_seconds)
        client.max_queued_messages_set(0)  # commands are bounded by Pub/Sub flow control
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        if on_response is not None:
            # paho routes a message whose topic matches this filter here, all others to
            # on_message; the templates are distinct, so no telemetry topic matches it.
            client.message_callback_add(
                topic_filter(settings.responses_topic, field_name="responses"), self._on_response
            )
        self._client = client
        self.sequencer = AckSequencer(client.ack)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._settings.mqtt_session_expiry_seconds
        properties.ReceiveMaximum = self._settings.max_inflight
        self._client.connect_async(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            keepalive=self._settings.mqtt_keepalive_seconds,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def unsubscribe(self, timeout: float) -> bool:
        """Leave the shared subscription (and never subscribe again); True on UNSUBACK."""
        self.draining = True
        self._unsubscribed.clear()
        if not self._connected.is_set():
            return False
        self._client.unsubscribe(self.subscriptions)
        done = self._unsubscribed.wait(timeout)
        log.info("left the shared subscription", extra={"unsubscribed": done})
        return done

    def stop(self, *, end_session: bool = False) -> None:
        """Disconnect. With ``end_session`` the broker drops the session (expiry 0); without,
        the session and what it has not acknowledged stay for a replica with this client id.
        """
        properties = None
        if end_session:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()
        self._connected.clear()
        self._metrics.mqtt_connected.set(0)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def is_current(self, ticket: Ticket) -> bool:
        return ticket.generation == self.sequencer.generation

    # -- paho callbacks (network thread) ----------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection", extra={"reason": str(reason)})
            return
        self.sequencer.new_connection()
        self._connected.set()
        self._metrics.mqtt_connected.set(1)
        self._metrics.mqtt_connects.inc()
        if self.draining:
            # Draining: the session's queued messages come anyway; no new share.
            log.info(
                "reconnected while draining",
                extra={"sessionPresent": bool(flags.session_present)},
            )
            return
        log.info(
            "connected to the broker",
            extra={
                "sessionPresent": bool(flags.session_present),
                "subscription": self.subscriptions,
            },
        )
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        self.subscribed = not refused
        if refused:
            log.error(
                "broker refused the subscription",
                extra={"subscription": self.subscriptions, "reason": refused},
            )

    def _on_unsubscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        self.subscribed = False
        self._unsubscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        # Packet ids die with the connection: nothing more may be acknowledged on it.
        self.sequencer.new_connection()
        self._connected.clear()
        self.subscribed = False
        self._metrics.mqtt_connected.set(0)
        log.warning("disconnected from the broker", extra={"reason": str(reason)})

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # The hot path: one call per message on paho's thread, kept to the minimum.
        qos = message.qos
        self.last_message = time.monotonic()
        self._on_message_cb(
            Inbound(
                message.topic,
                bytes(message.payload),
                qos,
                bool(message.dup),
                self.sequencer.track(message.mid, qos),
            )
        )

    def _on_response(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._on_response_cb is None:  # pragma: no cover - registered only with one
            return
        self.last_message = time.monotonic()
        properties = getattr(message, "properties", None)
        correlation = getattr(properties, "CorrelationData", None) if properties else None
        self._on_response_cb(
            ResponseInbound(
                message.topic,
                bytes(message.payload),
                bytes(correlation) if correlation else None,
                self.sequencer.track(message.mid, message.qos),
            )
        )

    # -- commands ----------------------------------------------------------------------

    def publish_command(
        self,
        topic: str,
        payload: bytes,
        on_puback: PubackCallback,
        properties: Properties | None = None,
    ) -> bool:
        """Publish at QoS 1; ``on_puback`` runs on the broker's PUBACK. False if not queued."""
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False  # NO_CONN still queues a QoS 1 message for the reconnect
        with self._acks_lock:
            early = self._early.pop(info.mid, _MISSING)
            if early is _MISSING:
                self._pending[info.mid] = on_puback
                return True
        on_puback(early)  # type: ignore[arg-type]
        return True

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        refusal = str(reason) if reason is not None and reason.is_failure else None
        # paho holds its message lock here: never wait on a lock held across publish().
        with self._acks_lock:
            callback = self._pending.pop(mid, None)
            if callback is None:
                self._early[mid] = refusal
                return
        callback(refusal)


def _tls_context(settings: BridgeSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=str(settings.mqtt_ca_file))
    context.load_cert_chain(str(settings.mqtt_cert_file), str(settings.mqtt_key_file))
    return context
