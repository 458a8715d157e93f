"""Regression: Pub/Sub's done-callbacks must never wait for the forwarder's lock.

Pub/Sub's client cancels a failed ordered batch while holding that ordering
key's lock, and the futures' done-callbacks run right there. Seen in CI: an MQTT
thread held the forwarder's lock inside publish(), waiting for the key's lock,
while the client's thread held the key's lock inside our callback, waiting for
ours; the bridge's drain never ended. `FakeOrderedPublisher` (a fake, named so)
reproduces exactly that interleaving with its own key lock.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.telemetry import Inbound, TelemetryForwarder


class FakeOrderedPublisher:
    """Stands in for pubsub_v1.PublisherClient: publish() takes the ordering-key lock."""

    def __init__(self) -> None:
        self.key_lock = threading.Lock()
        self.entered_publish = threading.Event()
        self.futures: list[Future[str]] = []

    def publish(self, topic: str, data: bytes, **attributes: Any) -> Future[str]:
        self.entered_publish.set()
        with self.key_lock:
            future: Future[str] = Future()
            self.futures.append(future)
            return future

    def resume_publish(self, topic: str, ordering_key: str) -> None:
        pass


def test_a_failing_batch_callback_under_the_key_lock_does_not_deadlock_a_publish() -> None:
    publisher = FakeOrderedPublisher()
    forwarder = TelemetryForwarder(
        publisher,
        topic_path="t",
        dead_letter_path="dl",
        template="dt/{thing}/telemetry",
        thing_name_pattern=".*",
        metrics=BridgeMetrics(),
        is_current=lambda _t: True,
        max_inflight=100,
        max_inflight_bytes=1 << 20,
    )

    def message(n: int) -> Inbound:
        return Inbound("dt/s1/telemetry", f"{n}".encode(), 1, False, Ticket(1, n, 1))

    forwarder.submit(message(1), on_done=lambda: None)
    (first,) = publisher.futures
    publisher.entered_publish.clear()

    # The client's batch thread: takes the key lock, waits until an MQTT thread is
    # inside publish() (holding the forwarder's lock), then fails the batch there.
    holding_key = threading.Event()

    def fail_batch_under_key_lock() -> None:
        with publisher.key_lock:
            holding_key.set()
            publisher.entered_publish.wait(5)
            first.set_exception(RuntimeError("batch failed"))

    batch_thread = threading.Thread(target=fail_batch_under_key_lock, daemon=True)
    mqtt_thread = threading.Thread(
        target=lambda: forwarder.submit(message(2), on_done=lambda: None), daemon=True
    )
    batch_thread.start()
    assert holding_key.wait(5)
    mqtt_thread.start()

    mqtt_thread.join(10)
    batch_thread.join(10)
    assert not mqtt_thread.is_alive(), "publish() deadlocked against the batch callback"
    assert not batch_thread.is_alive(), "the batch callback deadlocked against publish()"
    forwarder.close()
