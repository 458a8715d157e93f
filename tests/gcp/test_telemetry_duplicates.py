"""The duplicates metric counts messages actually published twice, and every copy of a
message carries the same ``dedupKey``; a broker redelivery of a message that was never
published is not a duplicate. ``InstantPublish`` is a stand-in for the Publish call."""

from __future__ import annotations

import threading

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.telemetry import Inbound, TelemetryForwarder, dedup_key
from tests.support.publish_standins import InstantPublish


def test_only_messages_published_twice_are_counted_and_copies_share_the_dedup_key() -> None:
    publish, metrics = InstantPublish(), BridgeMetrics()
    forwarder = TelemetryForwarder(
        publish,
        topic_path="projects/p/topics/t",
        dead_letter_path="projects/p/topics/dl",
        template="dt/{thing}/telemetry",
        thing_name_pattern=".*",
        metrics=metrics,
        is_current=lambda _t: True,
        max_inflight=100,
        max_inflight_bytes=1 << 20,
    )
    done = threading.Semaphore(0)

    def send(payload: bytes, *, dup: bool) -> None:
        message = Inbound("dt/s1/telemetry", payload, 1, dup, Ticket(1, 1, 1))
        forwarder.submit(message, done.release)
        assert done.acquire(timeout=10)

    send(b"s1:1", dup=False)
    send(b"s1:1", dup=True)  # redelivered after it was published: published twice
    send(b"s1:2", dup=True)  # redelivered, but its first delivery never got published
    forwarder.close()

    def count(name: str) -> float:
        return metrics.registry.get_sample_value(name) or 0.0

    assert count("bridge_telemetry_published_total") == 3
    assert count("bridge_telemetry_duplicates_total") == 1
    keys = [m.attributes["dedupKey"] for m in publish.published]
    assert keys[0] == keys[1] == dedup_key("dt/s1/telemetry", b"s1:1") != keys[2]
    assert len(keys[0]) == 32 and "mqttDup" not in publish.published[0].attributes
