"""The GCP rotation planner on the real Firestore and Pub/Sub emulators.

The daily plan schedules exactly the slots ``core.rotation_plan`` plans (the AWS
planner's function) within the hourly budget; the hourly dispatch tells each device of
the hour on its commands topic, with the command the device module acts on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from iot_remote_access.core.inventory_item import slot_key
from iot_remote_access.core.rotation_plan import RotationSettings, RotationState, floor_hour
from iot_remote_access.device.rotation import _is_rotate_command
from iot_remote_access.pubsub.rotation_planner import GcpRotationPlanner
from tests.support.gcp_rotation import Fleet, make_csr
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator, PubsubEmulator


@pytest.fixture
def fleet(
    firestore_emulator: FirestoreEmulator, emulator: PubsubEmulator, tmp_path: Path, ca: TestCa
) -> Fleet:
    return Fleet(tmp_path, ca)


def _planner(fleet: Fleet, budget: int) -> tuple[GcpRotationPlanner, str]:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = f"projects/{fleet.project}/topics/iot-commands"
    subscription = f"projects/{fleet.project}/subscriptions/commands-observer"
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    planner = GcpRotationPlanner(
        inventory=fleet.inventory,
        protocol=fleet.protocol(),
        publisher=publisher,
        commands_topic=topic,
        settings=RotationSettings(hourly_budget=budget),
    )
    return planner, subscription


def _pull(subscription: str, expected: int) -> list[pubsub_v1.types.ReceivedMessage]:
    subscriber = pubsub_v1.SubscriberClient()
    received: list[pubsub_v1.types.ReceivedMessage] = []
    for _ in range(20):
        answer = subscriber.pull(subscription=subscription, max_messages=100, timeout=5)
        received += answer.received_messages
        if answer.received_messages:
            ack_ids = [m.ack_id for m in answer.received_messages]
            subscriber.acknowledge(subscription=subscription, ack_ids=ack_ids)
        if len(received) >= expected:
            break
    return received


def test_the_daily_plan_schedules_the_aws_plan_and_the_dispatch_tells_each_device(
    fleet: Fleet,
) -> None:
    now = datetime.now(UTC)
    for n in range(12):  # due: expiring in 40..51 days (lead time 90)
        fleet.enroll(f"meter-{n:02d}", days=40 + n)
    fleet.enroll("meter-late", days=200)  # not due
    planner, subscription = _planner(fleet, budget=5)
    expected = planner.compute(now)
    report = planner.plan(now)
    assert report.failed == [] and report.counts["pending"] == 12
    assert report.counts["scheduledNext24h"] == 12  # 5 + 5 + 2 in the first three hours
    per_hour = sorted(expected.per_hour().values(), reverse=True)
    assert per_hour == [5, 5, 2]
    for slot in expected.slots:
        item = fleet.inventory.get(slot.thing)
        assert item is not None and item["rotationState"] == "SCHEDULED"
        assert item["slotHour"] == slot_key(slot.hour)
    late = fleet.inventory.get("meter-late")
    assert late is not None and late["rotationState"] == "IDLE"
    # The hourly dispatch of the first slot hour: its five devices, told once.
    first_hour = min(s.hour for s in expected.slots)
    first = sorted(s.thing for s in expected.slots if s.hour == first_hour)
    dispatched = planner.dispatch(first_hour + timedelta(minutes=5))
    assert dispatched.counts["requested"] == 5
    assert planner.dispatch(first_hour + timedelta(minutes=6)).counts["requested"] == 0
    messages = _pull(subscription, 5)
    assert sorted(m.message.attributes["thing"] for m in messages) == first
    for received in messages:
        thing = received.message.attributes["thing"]
        assert _is_rotate_command(received.message.data)  # what device/rotation.py acts on
        command = json.loads(received.message.data)
        assert command["csrTopic"] == f"rot/{thing}/csr" and command["attempt"] == 1
        item = fleet.inventory.get(thing)
        assert item is not None and item["rotationState"] == "REQUESTED"
        assert item["attempts"] == 1 and "slotHour" not in item
    assert floor_hour(first_hour) == first_hour


def test_a_timed_out_attempt_is_failed_its_certificate_revoked_and_planned_again(
    fleet: Fleet,
) -> None:
    now = datetime.now(UTC)
    old = fleet.enroll("meter-x", days=45, state=RotationState.REQUESTED)
    protocol = fleet.protocol()
    protocol.on_csr(json.dumps({"csr": make_csr("meter-x")}).encode(), {"thing": "meter-x"})
    item = fleet.inventory.get("meter-x")
    assert item is not None and item["rotationState"] == "ISSUED"
    pending = item["pendingCertificateId"]
    # Never confirmed: two days later the attempt (24 h timeout) has timed out.
    fleet.inventory.transition(
        "meter-x", None, {"lastAttemptAt": (now - timedelta(days=2)).isoformat(), "attempts": 1}
    )
    planner, _ = _planner(fleet, budget=5)
    report = planner.plan(now)
    assert report.counts["timedOut"] == 1 and report.failed == []
    assert fleet.issuer.revoked() == {pending}  # the unconfirmed one; never the working one
    item = fleet.inventory.get("meter-x")
    assert item is not None and item["certificateId"] == old
    # FAILED, then rescheduled after the backoff (6 h): SCHEDULED for a later slot.
    assert item["rotationState"] == "SCHEDULED" and "pendingCertificateId" not in item
    assert item["lastError"] == "attempt timed out"
