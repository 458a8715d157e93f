"""Declared per-device topics (topic model v2) on a real mosquitto broker.

The ACL comes from the same DeviceAccess as the AWS policy and HiveMQ; a device
publishes its own declared topic, is refused another device's, and a wildcard
subscription delivers only its own declared subscribe topic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.topics import Access, CustomTopic, DeviceAccess
from tests.support.gcp_clients import Device, wait_for
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker

HEALTH = CustomTopic("health", "dt/{thing}/health", Access.PUBLISH)
DESIRED = CustomTopic("desired", "cfg/{thing}/desired", Access.SUBSCRIBE)
#: A test backend that writes every desired topic (a rule of this test, not of the library).
WRITER = "writer.test"


@pytest.fixture
def acl() -> MosquittoAcl:
    return MosquittoAcl(access=DeviceAccess(custom=(HEALTH, DESIRED)))


@pytest.fixture
def broker(tmp_path: Path, ca: TestCa, acl: MosquittoAcl) -> Iterator[MosquittoBroker]:
    text = acl.render() + f"\nuser {WRITER}\ntopic write cfg/+/desired\n"
    server = MosquittoBroker(tmp_path / "broker", ca, text)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_acl_renders_declared_topics_with_the_certificate_identity(acl: MosquittoAcl) -> None:
    patterns = [r.line() for r in acl.rules() if r.user is None]
    assert "pattern write dt/%u/health" in patterns
    assert "pattern read cfg/%u/desired" in patterns


def test_declared_topics_on_a_real_broker(ca: TestCa, broker: MosquittoBroker) -> None:
    one = Device(ca.client("sensor-1"), broker.port, client_id="sensor-1")
    # Claiming another client id changes nothing: mosquitto's %u is the certificate CN.
    impostor = Device(ca.client("sensor-2"), broker.port, client_id="sensor-1-x")
    try:
        assert one.puback(one.publish("dt/sensor-1/health", b"ok", wait=False)) == "Success"
        assert one.puback(one.publish("dt/sensor-2/health", b"x", wait=False)) == ("Not authorized")
        assert impostor.puback(impostor.publish("dt/sensor-1/health", b"x", wait=False)) == (
            "Not authorized"
        )
        writer = Device(ca.client(WRITER), broker.port, client_id="writer")
        try:
            one.subscribe("cfg/+/desired")  # a wildcard: only its own topic is delivered
            assert impostor.puback(
                impostor.publish("cfg/sensor-1/desired", b"forged", wait=False)
            ) == ("Not authorized")
            writer.publish("cfg/sensor-2/desired", b"for two")
            writer.publish("cfg/sensor-1/desired", b"for one")
            own = ("cfg/sensor-1/desired", b"for one")
            wait_for(lambda: own in one.messages(), 10, "its own desired state")
            time.sleep(0.5)  # give anything else time to arrive too
            assert one.messages() == [own]
        finally:
            writer.close()
    finally:
        one.close()
        impostor.close()
