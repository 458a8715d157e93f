"""The bridge end to end on real parts: mosquitto (mutual TLS, the rendered ACL), the Pub/Sub
emulator, the bridge service in this process, devices as real MQTT 5 clients."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator

import pytest
from google.cloud import pubsub_v1

from iot_remote_access.bridge.service import BridgeService, make_publisher
from iot_remote_access.bridge.settings import BridgeSettings
from iot_remote_access.bridge.telemetry import dedup_key
from tests.support.gcp_clients import Device, PubsubReader, wait_for
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker, PubsubEmulator
from tests.support.tcp_gate import TcpGate

THINGS = [f"sensor-{i}" for i in range(4)]


@pytest.fixture
def bridge(bridge_settings: BridgeSettings) -> Iterator[BridgeService]:
    service = BridgeService(bridge_settings)
    service.start()
    wait_for(lambda: service.ready()[0], 20, "bridge readiness")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def devices(ca: TestCa, broker: MosquittoBroker) -> Iterator[dict[str, Device]]:
    made = {thing: Device(ca.client(thing), broker.port, client_id=thing) for thing in THINGS}
    try:
        yield made
    finally:
        for device in made.values():
            device.close()


def metric(service: BridgeService, name: str) -> float:
    value = service.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


def test_telemetry_reaches_pubsub_ordered_per_device_with_attributes(
    bridge: BridgeService, devices: dict[str, Device], project: str
) -> None:
    reader = PubsubReader(f"projects/{project}/subscriptions/iot-telemetry-analytics").start()
    try:
        per_device = 60
        mids = []
        for n in range(per_device):
            for thing, device in devices.items():
                mids.append(
                    (device, device.publish(f"dt/{thing}/telemetry", b"%d" % n, wait=False))
                )
        for device, mid in mids:
            assert device.puback(mid) == "Success"
        total = per_device * len(devices)
        wait_for(lambda: reader.count() >= total, 60, f"{total} messages on Pub/Sub")
        wait_for(lambda: metric(bridge, "bridge_telemetry_acked_total") >= total, 10, "acks")
        got = reader.snapshot()
    finally:
        reader.stop()

    assert len(got) == total
    sequences: dict[str, list[int]] = defaultdict(list)
    for message in got:
        thing = message.attributes["thing"]
        assert message.ordering_key == thing
        assert message.attributes["mqttTopic"] == f"dt/{thing}/telemetry"
        assert message.attributes["mqttQos"] == "1"
        assert message.attributes["dedupKey"] == dedup_key(f"dt/{thing}/telemetry", message.data)
        received = dt.datetime.fromisoformat(message.attributes["receivedAt"])
        assert abs(dt.datetime.now(dt.UTC) - received) < dt.timedelta(minutes=2)
        sequences[thing].append(int(message.data))
    assert sequences == {thing: list(range(per_device)) for thing in THINGS}
    assert metric(bridge, "bridge_telemetry_published_total") == total
    assert metric(bridge, "bridge_telemetry_acked_total") == total
    assert metric(bridge, "bridge_telemetry_inflight") == 0


def test_qos1_acknowledged_to_broker_only_after_pubsub_confirmed(
    bridge: BridgeService, devices: dict[str, Device], project: str, emulator: PubsubEmulator
) -> None:
    """With the emulator frozen (SIGSTOP), nothing is confirmed, so nothing is acknowledged
    to the broker; once it runs again, every message is published, then acknowledged."""
    assert emulator.process is not None
    reader = PubsubReader(f"projects/{project}/subscriptions/iot-telemetry-analytics").start()
    os.killpg(emulator.process.pid, signal.SIGSTOP)
    try:
        device = devices["sensor-0"]
        for n in range(20):
            device.publish("dt/sensor-0/telemetry", b"%d" % n)
        wait_for(lambda: metric(bridge, "bridge_telemetry_inflight") == 20, 10, "20 in flight")
        assert metric(bridge, "bridge_telemetry_acked_total") == 0
        assert bridge.link.sequencer.pending() == 20
    finally:
        os.killpg(emulator.process.pid, signal.SIGCONT)
    try:
        wait_for(lambda: metric(bridge, "bridge_telemetry_acked_total") == 20, 60, "acks")
        wait_for(lambda: reader.count() >= 20, 30, "20 messages on Pub/Sub")
        assert [int(m.data) for m in reader.snapshot()][:20] == list(range(20))
    finally:
        reader.stop()


def test_commands_reach_only_the_named_device_in_order_and_bad_ones_are_dead_lettered(
    bridge: BridgeService, devices: dict[str, Device], project: str
) -> None:
    for thing, device in devices.items():
        assert device.subscribe(f"cmd/{thing}/commands") == ["Granted QoS 1"]
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    topic = f"projects/{project}/topics/iot-commands"
    futures = []
    per_device = 25
    for n in range(per_device):
        for thing in THINGS:
            futures.append(
                publisher.publish(topic, f"{thing}:{n}".encode(), ordering_key=thing, thing=thing)
            )
    bad = {
        "+": "wildcard",
        "#": "multi-level wildcard",
        "sensor-0/../sensor-1": "path",
        "": "empty",
        "a" * 129: "too long",
        "sensor 1": "space",
    }
    for thing in bad:
        futures.append(publisher.publish(topic, b"bad", thing=thing))
    futures.append(publisher.publish(topic, b"no thing attribute"))
    for future in futures:
        future.result(timeout=30)

    dead = PubsubReader(f"projects/{project}/subscriptions/iot-commands-dead-letter-hold").start()
    try:
        for thing, device in devices.items():
            wait_for(lambda d=device: len(d.messages()) >= per_device, 60, f"commands to {thing}")
        wait_for(lambda: dead.count() >= len(bad) + 1, 30, "dead letters")
        dead_letters = dead.snapshot()
    finally:
        dead.stop()

    for thing, device in devices.items():
        assert device.messages() == [
            (f"cmd/{thing}/commands", f"{thing}:{n}".encode()) for n in range(per_device)
        ]
    assert {m.attributes.get("thing") for m in dead_letters} == {*bad, None}
    assert {m.attributes["deadLetterReason"] for m in dead_letters} == {"invalid-thing"}
    assert all("allowed:" in m.attributes["deadLetterDetail"] for m in dead_letters)
    wait_for(
        lambda: metric(bridge, "bridge_commands_delivered_total") == per_device * 4,
        10,
        "delivered count",
    )
    assert (
        bridge.metrics.registry.get_sample_value(
            "bridge_commands_dead_lettered_total", {"reason": "invalid-thing"}
        )
        == len(bad) + 1
    )


def test_health_readiness_and_metrics_endpoints(bridge: BridgeService) -> None:
    base = f"http://127.0.0.1:{bridge.http.port}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {
            "status": "ok",
            "commandsThread": True,
            "stopped": False,
        }
    with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
        body = json.loads(response.read())
        assert body == {
            "status": "ok",
            "mqttConnected": True,
            "mqttSubscribed": True,
            "commandsStreaming": True,
            "draining": False,
            "pubsubPublishing": True,
            "oldestUnconfirmedSeconds": 0.0,
            "parked": 0,
        }
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for name in (
        "bridge_telemetry_received_total",
        "bridge_telemetry_published_total",
        "bridge_telemetry_acked_total",
        "bridge_telemetry_publish_failed_total",
        "bridge_telemetry_duplicates_total",
        "bridge_telemetry_redelivered_total",
        "bridge_telemetry_undeliverable_total",
        "bridge_telemetry_parked",
        "bridge_telemetry_oldest_unconfirmed_seconds",
        "bridge_telemetry_inflight",
        "bridge_telemetry_latency_seconds_bucket",
        "bridge_mqtt_connected 1.0",
    ):
        assert name in text
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "/nope", timeout=5)
    assert missing.value.code == 404
    assert json.loads(missing.value.read())["allowed"] == ["/healthz", "/readyz", "/metrics"]
    bridge.draining = True
    with pytest.raises(urllib.error.HTTPError) as unready:
        urllib.request.urlopen(base + "/readyz", timeout=5)
    assert unready.value.code == 503
    bridge.draining = False


def test_command_is_acked_to_pubsub_only_after_the_brokers_puback(
    bridge: BridgeService, devices: dict[str, Device], project: str, broker: MosquittoBroker
) -> None:
    """With the broker frozen (SIGSTOP) no PUBACK comes: the command stays in flight, not
    acknowledged to Pub/Sub; once the broker runs again it is delivered, then acknowledged."""
    device = devices["sensor-1"]
    device.subscribe("cmd/sensor-1/commands")
    assert broker.process is not None
    os.killpg(broker.process.pid, signal.SIGSTOP)
    try:
        publisher = pubsub_v1.PublisherClient()
        publisher.publish(
            f"projects/{project}/topics/iot-commands", b"reboot", thing="sensor-1"
        ).result(timeout=30)
        wait_for(lambda: metric(bridge, "bridge_commands_inflight") == 1, 20, "command in flight")
        assert metric(bridge, "bridge_commands_delivered_total") == 0
    finally:
        os.killpg(broker.process.pid, signal.SIGCONT)
    wait_for(lambda: metric(bridge, "bridge_commands_delivered_total") == 1, 20, "PUBACK")
    assert metric(bridge, "bridge_commands_inflight") == 0
    wait_for(lambda: device.messages() == [("cmd/sensor-1/commands", b"reboot")], 10, "delivery")


def test_failed_ordered_publishes_are_resumed_and_republished_in_order(
    bridge_settings: BridgeSettings,
    devices: dict[str, Device],
    project: str,
    emulator: PubsubEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pub/Sub unreachable for longer than the publish timeout: the Publish calls fail, each
    thing's lane waits (backoff) and publishes its unconfirmed messages again, in order."""
    gate = TcpGate(emulator.port)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", gate.address)  # the bridge's clients only
    settings = bridge_settings.model_copy(update={"publish_timeout_seconds": 1.0})
    service = BridgeService(settings, publisher=make_publisher(settings))
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    reader = PubsubReader(f"projects/{project}/subscriptions/iot-telemetry-analytics").start()
    service.start()
    try:
        wait_for(lambda: service.link.subscribed, 20, "bridge subscribed")
        gate.refuse()
        gate.drop()
        for n in range(30):
            for thing in THINGS[:3]:
                devices[thing].publish(f"dt/{thing}/telemetry", b"%d" % n, wait=False)
        wait_for(
            lambda: metric(service, "bridge_telemetry_publish_failed_total") >= 3,
            30,
            "failed publishes",
        )
        assert metric(service, "bridge_telemetry_acked_total") == 0
        gate.accept()
        wait_for(lambda: metric(service, "bridge_telemetry_acked_total") == 90, 90, "90 acks")
        wait_for(
            lambda: len({(m.attributes["thing"], m.data) for m in reader.snapshot()}) == 90,
            30,
            "90 messages on Pub/Sub",
        )
        got = reader.snapshot()
    finally:
        reader.stop()
        service.stop()
        gate.close()
    first: dict[str, list[int]] = defaultdict(list)
    for thing, data in dict.fromkeys((m.attributes["thing"], int(m.data)) for m in got):
        first[thing].append(data)
    assert first == {thing: list(range(30)) for thing in THINGS[:3]}


def test_inflight_is_bounded_by_the_receive_maximum(
    bridge_settings: BridgeSettings,
    devices: dict[str, Device],
    project: str,
    emulator: PubsubEmulator,
) -> None:
    """With Pub/Sub stalled, the broker sends the bridge at most BRIDGE_MAX_INFLIGHT
    unacknowledged messages (MQTT 5 Receive Maximum) and keeps the rest."""
    service = BridgeService(bridge_settings.model_copy(update={"max_inflight": 10}))
    reader = PubsubReader(f"projects/{project}/subscriptions/iot-telemetry-analytics").start()
    service.start()
    assert emulator.process is not None
    try:
        wait_for(lambda: service.link.subscribed, 20, "bridge subscribed")
        os.killpg(emulator.process.pid, signal.SIGSTOP)
        try:
            for n in range(40):
                devices["sensor-2"].publish("dt/sensor-2/telemetry", b"%d" % n)
            wait_for(lambda: metric(service, "bridge_telemetry_inflight") == 10, 10, "10 held")
            time.sleep(1.0)
            assert metric(service, "bridge_telemetry_inflight") == 10
            assert service.link.sequencer.pending() == 10
        finally:
            os.killpg(emulator.process.pid, signal.SIGCONT)
        wait_for(lambda: metric(service, "bridge_telemetry_acked_total") == 40, 60, "40 acks")
        wait_for(lambda: reader.count() >= 40, 30, "40 messages on Pub/Sub")
        assert [int(m.data) for m in reader.snapshot()] == list(range(40))
    finally:
        reader.stop()
        service.stop()


def test_a_command_dead_letter_that_fails_is_not_logged_as_sent_and_names_the_cause(
    bridge: BridgeService, project: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The commands dead-letter topic is missing: the invalid command is nacked (Pub/Sub
    redelivers it), the real cause is logged, and nothing claims it was dead-lettered."""
    dead_topic = f"projects/{project}/topics/iot-commands-dead-letter"
    subscriber = pubsub_v1.SubscriberClient()
    publisher = pubsub_v1.PublisherClient()
    for sub in publisher.list_topic_subscriptions(topic=dead_topic):
        subscriber.delete_subscription(subscription=sub)
    publisher.delete_topic(topic=dead_topic)
    publisher.publish(f"projects/{project}/topics/iot-commands", b"x", thing="+").result(30)
    wait_for(lambda: metric(bridge, "bridge_commands_failed_total") >= 1, 30, "a failed command")
    messages = [record.getMessage() for record in caplog.records]
    failed = [
        r for r in caplog.records if r.getMessage().startswith("command dead-letter publish failed")
    ]
    assert failed and str(getattr(failed[0], "cause", "")).startswith("NotFound")
    assert "command sent to the dead-letter topic" not in messages
    assert (
        bridge.metrics.registry.get_sample_value(
            "bridge_commands_dead_lettered_total", {"reason": "invalid-thing"}
        )
        is None
    )
