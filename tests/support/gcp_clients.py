"""MQTT devices and a Pub/Sub reader for the bridge tests (real paho and Pub/Sub clients)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.support.pki import ClientCredentials


class Device:
    """An MQTT 5 client with a client certificate; records what it receives and its PUBACKs."""

    def __init__(
        self,
        credentials: ClientCredentials,
        port: int,
        *,
        client_id: str,
        clean_start: bool = True,
        session_expiry: int = 0,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.tls_set(
            ca_certs=str(credentials.ca_file),
            certfile=str(credentials.cert_file),
            keyfile=str(credentials.key_file),
        )
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.received: list[mqtt.MQTTMessage] = []
        self.subacks: dict[int, list[str]] = {}
        self.pubacks: dict[int, str] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.connects = 0
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self._connected.clear()
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry
        self.client.connect_async(
            "127.0.0.1", port, keepalive=10, clean_start=clean_start, properties=properties
        )
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError(f"{client_id} could not connect to 127.0.0.1:{port}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connects += 1
        self._connected.set()

    @property
    def connected(self) -> threading.Event:
        return self._connected

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(message)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        with self._lock:
            self.subacks[mid] = [str(rc) for rc in rcs]

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            # Reason codes below 0x80 are all success (e.g. "No matching subscribers").
            self.pubacks[mid] = "Success" if not rc.is_failure else str(rc)

    def subscribe(self, topic_filter: str, timeout: float = 5) -> list[str]:
        _, mid = self.client.subscribe(topic_filter, options=SubscribeOptions(qos=1))
        wait_for(lambda: mid in self.subacks, timeout, f"SUBACK for {topic_filter}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, *, wait: bool = True) -> int:
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            wait_for(lambda: info.mid in self.pubacks, 10, f"PUBACK for {topic}")
        return info.mid

    def puback(self, mid: int, timeout: float = 10) -> str:
        wait_for(lambda: mid in self.pubacks, timeout, f"PUBACK {mid}")
        return self.pubacks[mid]

    def messages(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(m.topic, bytes(m.payload)) for m in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class PulledMessage:
    data: bytes
    attributes: dict[str, str]
    ordering_key: str
    #: Wall clock at receipt (ns), for latency measurements.
    received_ns: int = 0


@dataclass
class PubsubReader:
    """Streams a subscription, acknowledging everything, keeping what arrived in order."""

    subscription: str
    subscriber: Any = None
    messages: list[PulledMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        from google.cloud import pubsub_v1  # lazily: load generators import only the MQTT side

        self._pubsub = pubsub_v1
        if self.subscriber is None:
            self.subscriber = pubsub_v1.SubscriberClient()
        self._lock = threading.Lock()
        self._future: Any = None

    def start(self) -> PubsubReader:
        self._future = self.subscriber.subscribe(
            self.subscription,
            self._on_message,
            flow_control=self._pubsub.types.FlowControl(max_messages=5000),
        )
        return self

    def _on_message(self, message: Any) -> None:
        with self._lock:
            self.messages.append(
                PulledMessage(
                    message.data, dict(message.attributes), message.ordering_key, time.time_ns()
                )
            )
        message.ack()

    def snapshot(self) -> list[PulledMessage]:
        with self._lock:
            return list(self.messages)

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(Exception):  # a cancelled stream ends with an error
                self._future.result(timeout=10)
            self._future = None


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
