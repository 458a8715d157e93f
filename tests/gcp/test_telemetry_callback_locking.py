"""Regression: a Publish call's done-callback must never wait for a lock the caller holds.

gRPC runs a future's done-callback right inside ``add_done_callback`` when the call
has already finished, and otherwise on its own thread. Seen in CI with the old
client-based publisher: an MQTT thread held the forwarder's lock inside publish()
while the client's thread, inside a done-callback, waited for it; the bridge's
drain never ended. ``InstantPublish`` and ``ThreadedPublish`` (fakes, named so)
reproduce both ways a callback can run, while MQTT threads keep submitting; a
failing call in between exercises the retry path. Every message must come back,
in order per thing, within a bounded time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.telemetry import Inbound, TelemetryForwarder
from tests.support.publish_standins import InstantPublish, ThreadedPublish


def forwarder(
    publish: Callable[[str, Sequence[Any]], Any], metrics: BridgeMetrics
) -> TelemetryForwarder:
    return TelemetryForwarder(
        publish,
        topic_path="projects/p/topics/t",
        dead_letter_path="projects/p/topics/dl",
        template="dt/{thing}/telemetry",
        thing_name_pattern=".*",
        metrics=metrics,
        is_current=lambda _t: True,
        max_inflight=10_000,
        max_inflight_bytes=1 << 24,
        backoff=(0.01, 0.05),
    )


@pytest.mark.parametrize("publish_type", [InstantPublish, ThreadedPublish])
def test_callbacks_on_any_thread_never_deadlock_and_keep_each_things_order(
    publish_type: type[InstantPublish],
) -> None:
    publish = publish_type(fail_every=3)
    metrics = BridgeMetrics()
    fwd = forwarder(publish, metrics)
    done = threading.Semaphore(0)
    per_thread, things = 500, ["s1", "s2", "s3", "s4"]

    def mqtt_thread(thing: str) -> None:
        for n in range(per_thread):
            message = Inbound(f"dt/{thing}/telemetry", f"{n}".encode(), 1, False, Ticket(1, n, 1))
            fwd.submit(message, done.release)
            if n % 25 == 0:
                time.sleep(0.002)  # many calls, not one big batch

    threads = [threading.Thread(target=mqtt_thread, args=(t,), daemon=True) for t in things]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for _ in range(per_thread * len(things)):
        assert done.acquire(timeout=max(0.1, deadline - time.monotonic())), (
            "a message never came back"
        )
    fwd.close()
    assert fwd.inflight() == 0
    first_seen: dict[str, list[int]] = defaultdict(list)
    for message in publish.published:
        seq = int(message.data)
        if seq not in first_seen[message.ordering_key]:
            first_seen[message.ordering_key].append(seq)
    assert first_seen == {thing: list(range(per_thread)) for thing in things}
    assert publish.calls >= 2  # the first call (and every third) failed and was retried
    assert (metrics.registry.get_sample_value("bridge_telemetry_publish_failed_total") or 0) > 0
