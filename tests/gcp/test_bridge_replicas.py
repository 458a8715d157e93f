"""The bridge as its workload runs it: a StatefulSet of 2 replicas with fixed client ids
(bridge-0, bridge-1), replaced one at a time, scaled down, and a poison message.

10,000 QoS 1 messages each, real mosquitto (persistence, the rendered ACL), the Pub/Sub
emulator, each replica its own process (``python -m iot_remote_access.bridge``); lost = 0.

- rolling update: each replica in turn is stopped (SIGTERM: it leaves the shared
  subscription, delivers what the broker had queued for it, ends its session; or
  SIGKILL: nothing of that) and a replacement with the same client id starts; after
  SIGKILL it resumes the session and what the broker kept for it.
- scale 2 -> 1: bridge-1 gets SIGTERM and never comes back; everything published
  afterwards must reach Pub/Sub through bridge-0 (no dead session keeps a share).
- poison: a message that neither its topic nor the (missing) dead-letter topic takes:
  the other things' telemetry keeps flowing, /readyz turns 503 within the documented
  bound, the real cause is logged once per interval; once the dead-letter topic exists,
  the poison message reaches it.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from iot_remote_access.constructs.gcp.bridge_deployment import GRACE_MARGIN_SECONDS
from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from tests.gcp.conftest import bridge_environment
from tests.support.gcp_clients import Device, PubsubReader, PulledMessage, wait_for
from tests.support.pki import TestCa
from tests.support.processes import BridgeProcess, MosquittoBroker, free_port
from tests.support.telemetry_stream import (
    Stream,
    first_copies_in_order,
    loss_report,
    readyz,
)

DEVICES = 20
PER_DEVICE = 500  # 10,000 messages
RATE = 800.0  # messages per second: the stream lasts ~13 s
TELEMETRY = "iot-telemetry-analytics"

DRAIN_SECONDS = 20
#: What Kubernetes waits after SIGTERM before SIGKILL: the rendered StatefulSet's
#: terminationGracePeriodSeconds is the drain timeout plus 30 s.
GRACE_SECONDS = DRAIN_SECONDS + GRACE_MARGIN_SECONDS


class Replica:
    """One pod of the bridge's StatefulSet: a fixed client id, a process that can be replaced."""

    def __init__(self, tmp: Path, ordinal: int, env: dict[str, str]) -> None:
        self.name = f"bridge-{ordinal}"
        self.http = free_port()
        self.process = BridgeProcess(
            tmp / self.name,
            {**env, "BRIDGE_MQTT_CLIENT_ID": self.name, "BRIDGE_HTTP_PORT": str(self.http)},
        )

    def start(self) -> None:
        self.process.start()
        wait_for(lambda: readyz(self.http)[0] == 200, 60, f"{self.name} ready")

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.process.log().splitlines() if line.strip()]


@pytest.fixture
def replicas(
    tmp_path: Path, ca: TestCa, project: str, broker: MosquittoBroker, acl: MosquittoAcl
) -> Iterator[list[Replica]]:
    assert acl.bridge_identity is not None
    env = bridge_environment(
        project, broker, ca, acl.bridge_identity, drain_timeout_seconds=DRAIN_SECONDS
    )
    made = [Replica(tmp_path, ordinal, env) for ordinal in (0, 1)]
    try:
        yield made
    finally:
        for replica in made:
            replica.process.stop(sig=signal.SIGKILL)


def run_stream(
    ca: TestCa,
    broker: MosquittoBroker,
    project: str,
    during: list[tuple[int, Callable[[], object]]],
) -> tuple[Stream, list[PulledMessage]]:
    """Stream 10,000 messages; at each (sent, action) run action(); return what arrived."""
    reader = PubsubReader(f"projects/{project}/subscriptions/{TELEMETRY}").start()
    stream = Stream(ca, broker.port, devices=DEVICES, per_device=PER_DEVICE, rate=RATE).start()
    try:
        for sent, action in during:
            stream.wait_sent(sent)
            action()
        stream.join(120)
        wait_for(lambda: stream.unacknowledged() == 0, 90, "PUBACKs for every message")
        expected = stream.expected
        wait_for(
            lambda: {m.data.decode() for m in reader.snapshot()} >= expected,
            90,
            "every message on Pub/Sub",
        )
        time.sleep(1.0)  # late duplicates still in flight are counted too
        return stream, list(reader.snapshot())
    finally:
        reader.stop()
        stream.close()


def check_no_loss(
    stream: Stream, got: list[PulledMessage], record: pytest.RecordProperty, *, ordered: bool
) -> None:
    """Nothing lost; with ``ordered`` (one replica) each device's messages also in order.

    With two replicas the broker hands a device's consecutive messages to either
    replica (a shared subscription balances per message), so their order on Pub/Sub
    is not guaranteed: docs/bridge-runtime.md says so.
    """
    lost, _duplicates, summary = loss_report(stream.expected, got)
    print("\n" + summary)
    record("bridge_replicas", summary)
    assert lost == 0
    if ordered:
        assert first_copies_in_order(got) == {}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_rolling_update_of_two_replicas_loses_nothing(
    replicas: list[Replica],
    ca: TestCa,
    broker: MosquittoBroker,
    project: str,
    sig: signal.Signals,
    record_property: pytest.RecordProperty,
) -> None:
    for replica in replicas:
        replica.start()
    exits: dict[str, int | None] = {}

    def replace(replica: Replica) -> None:
        # A StatefulSet rolling update: highest ordinal first, the next only once ready.
        exits[replica.name] = replica.process.stop(sig=sig, timeout=GRACE_SECONDS)
        replica.start()

    stream, got = run_stream(
        ca,
        broker,
        project,
        [(2500, lambda: replace(replicas[1])), (6000, lambda: replace(replicas[0]))],
    )
    check_no_loss(stream, got, record_property, ordered=False)
    for replica in replicas:
        lines = replica.lines()
        connects = [line for line in lines if line["message"] == "connected to the broker"]
        stops = [line for line in lines if line["message"] == "bridge stopped"]
        if sig == signal.SIGTERM:
            assert exits[replica.name] == 0
            assert stops and stops[0]["drained"] is True and stops[0]["sessionEnded"] is True
            assert connects[-1]["sessionPresent"] is False  # the old session was ended
        else:
            assert exits[replica.name] == -signal.SIGKILL
            assert connects[-1]["sessionPresent"] is True  # the replacement resumed it


def test_scale_down_from_two_replicas_to_one_loses_nothing(
    replicas: list[Replica],
    ca: TestCa,
    broker: MosquittoBroker,
    project: str,
    record_property: pytest.RecordProperty,
) -> None:
    for replica in replicas:
        replica.start()
    exits: list[int | None] = []
    stream, got = run_stream(
        ca,
        broker,
        project,
        [(3000, lambda: exits.append(replicas[1].process.stop(timeout=GRACE_SECONDS)))],
    )
    check_no_loss(stream, got, record_property, ordered=False)
    assert exits == [0]
    (stopped,) = [line for line in replicas[1].lines() if line["message"] == "bridge stopped"]
    assert stopped["drained"] is True and stopped["sessionEnded"] is True
    # Everything after the scale-down went through bridge-0: 7,000 messages and more.
    assert readyz(replicas[0].http)[0] == 200


STALL = 3.0  # BRIDGE_STALL_SECONDS in the poison test
LOG_INTERVAL = 2.0  # BRIDGE_LOG_INTERVAL_SECONDS in the poison test


def test_poison_message_with_the_dead_letter_topic_missing_stalls_nothing(
    tmp_path: Path,
    ca: TestCa,
    broker: MosquittoBroker,
    project: str,
    acl: MosquittoAcl,
    record_property: pytest.RecordProperty,
) -> None:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    dead_topic = f"projects/{project}/topics/iot-telemetry-dead-letter"
    for sub in publisher.list_topic_subscriptions(topic=dead_topic):
        subscriber.delete_subscription(subscription=sub)
    publisher.delete_topic(topic=dead_topic)
    assert acl.bridge_identity is not None
    env = bridge_environment(
        project,
        broker,
        ca,
        acl.bridge_identity,
        thing_name_pattern="dev-[0-9]+",  # poison-0 is a device, but not one of this fleet's
        stall_seconds=STALL,
        log_interval_seconds=LOG_INTERVAL,
    )
    replica = Replica(tmp_path, 0, env)
    replica.start()
    poison = Device(ca.client("poison-0"), broker.port, client_id="poison-0")
    timeline: dict[str, float] = {}

    def send_poison() -> None:
        poison.publish("dt/poison-0/telemetry", b"poison")  # waits for the broker's PUBACK
        timeline["poison"] = time.monotonic()

    def watch_readiness() -> None:
        wait_for(lambda: readyz(replica.http)[0] == 503, STALL + 5, "/readyz 503")
        timeline["503"] = time.monotonic()

    try:
        stream, got = run_stream(
            ca, broker, project, [(1000, send_poison), (1001, watch_readiness)]
        )
        status, body = readyz(replica.http)
        assert status == 503 and body["pubsubPublishing"] is False and body["parked"] == 1
        # The dead-letter topic comes back: the parked message goes there, readiness too.
        publisher.create_topic(name=dead_topic)
        hold = f"projects/{project}/subscriptions/poison-hold"
        subscriber.create_subscription(name=hold, topic=dead_topic)
        dead = PubsubReader(hold).start()
        try:
            wait_for(lambda: dead.count() >= 1, 30, "the poison message on the dead-letter topic")
            wait_for(lambda: readyz(replica.http)[0] == 200, 10, "/readyz 200 again")
            (message,) = dead.snapshot()
        finally:
            dead.stop()
    finally:
        poison.close()
    check_no_loss(stream, got, record_property, ordered=True)
    assert message.data == b"poison"
    assert message.attributes["deadLetterReason"] == "thing-name-pattern"
    # 503 within the bound: the stall bound plus the watchdog's and this poll's periods.
    assert timeline["503"] - timeline["poison"] <= STALL + 1.5
    lines = replica.lines()
    causes = [
        line for line in lines if str(line["message"]).startswith("dead-letter publish failed")
    ]
    assert causes and all(str(c["cause"]).startswith("NOT_FOUND") for c in causes)
    # Once per interval, not per message or per retry.
    failing_for = time.monotonic() - timeline["poison"]
    assert len(causes) <= failing_for / LOG_INTERVAL + 1
    assert any(str(line["message"]).startswith("undelivered telemetry held back") for line in lines)
    sent = [line for line in lines if line["message"] == "telemetry sent to the dead-letter topic"]
    assert len(sent) == 1 and sent[0]["cause"] == "thing-name-pattern"
