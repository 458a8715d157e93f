"""The device module joined with the AWS rotation code: the real planner, signer and confirm
code (lambdas/certs, against moto's IoT, DynamoDB and ACM Private CA), the real device
module, real mosquitto with mutual TLS in between.

STAND-INS, named: AWS IoT's data plane publishes on mosquitto (``MqttDataPlane``), and
the two IoT rules are an MQTT client that builds each rule's event and calls the
Lambda code. mosquitto does not say which certificate a client connected with, so the
rule stand-in passes as ``principal()`` the certificate the inventory says the device
holds: the enrolled one for the CSR, the pending one for the confirmation (the device
sends that only once connected with the new certificate, which this test also checks).
"""

from __future__ import annotations

import json
import queue
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509

from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.core.topics import TopicModel, thing_from_topic
from iot_remote_access.device.certificate_check import load_expected_cas
from iot_remote_access.device.rotation import STEPS, Broker, RotationDevice
from iot_remote_access.device.rotation_state import CredentialStore
from tests.support.mqtt_iot_data import mqtt5_client
from tests.support.pki import ClientCredentials
from tests.support.processes import MosquittoBroker
from tests.support.rotation_device import (
    SIGNER_IDENTITY,
    SigningCa,
    provisioned_store,
    rotation_acl,
)
from tests.test_cert_rotation_moto import T0, Fleet, fleet  # noqa: F401 - fixture
from tests.test_device_rotation_power_loss import connects, run_device

THING = "sensor-1"
TOPICS = TopicModel()


class MqttDataPlane:
    """STAND-IN for the iot-data client the Lambda code calls: ``publish`` goes to mosquitto."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client

    def publish(self, *, topic: str, qos: int, payload: bytes, **_: Any) -> dict[str, Any]:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)
        return {}


@dataclass
class AwsSide:
    """mosquitto trusting the factory CA and the fleet's ACM Private CA, and the rules."""

    fleet: Fleet
    test_ca: SigningCa
    broker: MosquittoBroker
    rules: mqtt.Client
    fleet_ca_pem: bytes
    outcomes: queue.Queue[tuple[str, int, dict[str, Any]]]

    def close(self) -> None:
        self.rules.loop_stop()
        self.rules.disconnect()
        self.broker.stop()


@pytest.fixture
def aws(fleet: Fleet, tmp_path: Path) -> Iterator[AwsSide]:  # noqa: F811 - imported fixture
    pca = fleet.session.client("acm-pca")
    fleet_ca = pca.get_certificate_authority_certificate(CertificateAuthorityArn=fleet.ca_arn)
    fleet_ca_pem = fleet_ca["Certificate"].encode()
    test_ca = SigningCa(tmp_path / "pki")  # the broker's certificate and the factory pairs
    broker = MosquittoBroker(tmp_path / "mosquitto", test_ca, rotation_acl())
    # The broker trusts both: the factory certificates and those ACM Private CA issues.
    with test_ca.ca_file.open("ab") as bundle:
        bundle.write(b"\n" + fleet_ca_pem)
    broker.start()
    rules = mqtt5_client(SIGNER_IDENTITY, test_ca.client(SIGNER_IDENTITY))
    rules.connect("127.0.0.1", broker.port)
    rules.loop_start()
    fleet.runtime.rotation.clients.iot_data = MqttDataPlane(rules)
    outcomes: queue.Queue[tuple[str, int, dict[str, Any]]] = queue.Queue()

    def rule(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        """Both IoT rules: build the event as the rule SQL does, run the Lambda code."""
        item = fleet.state(THING)
        if thing_from_topic(TOPICS.rotation_csr, message.topic):
            event = {**json.loads(message.payload), "topic": message.topic}
            outcome = fleet.runtime.rotation.sign({**event, "principal": item["certificateId"]}, T0)
            outcomes.put(("sign", outcome.status, outcome.body))
        else:
            event = {"topic": message.topic, "principal": item.get("pendingCertificateId")}
            outcome = fleet.runtime.rotation.confirm(event, T0)
            outcomes.put(("confirm", outcome.status, outcome.body))

    rules.message_callback_add("rot/+/csr", rule)
    rules.message_callback_add("rot/+/confirm", rule)
    rules.subscribe([("rot/+/csr", 1), ("rot/+/confirm", 1)])
    side = AwsSide(fleet, test_ca, broker, rules, fleet_ca_pem, outcomes)
    try:
        yield side
    finally:
        side.close()


def _installed_is_registered(aws: AwsSide, store: CredentialStore) -> x509.Certificate:
    """The inventory moved on, the old certificate is INACTIVE, and the device holds
    exactly the certificate IoT registered."""
    deadline = time.monotonic() + 10  # the rule may still be running the confirm code
    while aws.fleet.state(THING)["rotationState"] != RotationState.IDLE:
        assert time.monotonic() < deadline, aws.fleet.state(THING)["rotationState"]
        time.sleep(0.05)
    item = aws.fleet.state(THING)
    installed = store.certificate_file(store.load().current).read_bytes()
    leaf = x509.load_pem_x509_certificate(installed)
    registered = aws.fleet.iot.describe_certificate(certificateId=item["certificateId"])
    registered_pem = registered["certificateDescription"]["certificatePem"]
    assert x509.load_pem_x509_certificate(registered_pem.encode()) == leaf
    return leaf


def test_the_aws_planner_and_signer_rotate_the_real_device(aws: AwsSide, tmp_path: Path) -> None:
    cloud, test_ca, broker, outcomes = aws.fleet, aws.test_ca, aws.broker, aws.outcomes
    fleet_ca_pem = aws.fleet_ca_pem
    enrolled = cloud.add_device(THING, expires_in_days=40)
    store = provisioned_store(tmp_path / "device", test_ca, THING)
    steps: list[str] = []
    device = RotationDevice(
        thing=THING,
        store=store,
        broker=Broker("127.0.0.1", broker.port, server_ca_file=test_ca.ca_file),
        expected_cas=load_expected_cas(fleet_ca_pem),  # only what the fleet's CA issues
        connect_timeout=5.0,
        step_hook=steps.append,
    )
    device.start()
    try:
        cloud.request_rotation(enrolled)  # daily plan + hourly dispatch: the command goes out
        kind, status, body = outcomes.get(timeout=30)
        assert (kind, status, body["status"]) == ("sign", 200, "issued"), body
        kind, status, body = outcomes.get(timeout=30)
        assert (kind, status) == ("confirm", 200), body
        deadline = time.monotonic() + 10
        while "cleaned" not in steps and time.monotonic() < deadline:
            time.sleep(0.05)  # the broker's PUBACK may reach the device after the rule ran
        assert steps.index("connected") < steps.index("confirmed")  # confirmed from the new
        _installed_is_registered(aws, store)
        assert cloud.status(enrolled.certificate_id) == "INACTIVE"
        assert device.client is not None and device.client.is_connected()
    finally:
        device.stop()


@pytest.mark.parametrize("step", STEPS)
def test_killed_after_any_step_the_aws_rotation_still_completes(
    aws: AwsSide, tmp_path: Path, step: str
) -> None:
    """The power-loss test of test_device_rotation_power_loss.py, against the AWS code:
    a restart re-sends the same CSR, and the signer answers it as a duplicate."""
    enrolled = aws.fleet.add_device(THING, expires_in_days=40)
    store = provisioned_store(tmp_path / "device", aws.test_ca, THING)
    expected = tmp_path / "fleet-ca.pem"
    expected.write_bytes(aws.fleet_ca_pem)
    config = {
        "thing": THING,
        "store": str(store.directory),
        "port": aws.broker.port,
        "server_ca": str(aws.test_ca.ca_file),
        "expected_ca": str(expected),
        "stop_at": step,
        "timeout": 30.0,
    }
    code, lines = run_device(
        config, tmp_path / "run1.json", lambda: aws.fleet.request_rotation(enrolled)
    )
    assert code == -signal.SIGKILL and lines[-1] == f"step {step}", lines
    code, lines = run_device({**config, "stop_at": None}, tmp_path / "run2.json")
    assert code == 0, lines

    progress = store.load()
    assert progress.current != "factory" and progress.pending is None, (step, lines)
    _installed_is_registered(aws, store)
    assert aws.fleet.status(enrolled.certificate_id) == "INACTIVE"
    key_file = store.directory / "keys" / f"{progress.current}.key"
    credentials = ClientCredentials(
        aws.test_ca.ca_file, store.certificate_file(progress.current), key_file
    )
    assert connects(credentials, aws.broker.port)
    signed = []
    while not aws.outcomes.empty():
        signed.append(aws.outcomes.get())
    issued = [body for kind, _, body in signed if kind == "sign" and body["status"] == "issued"]
    assert len(issued) == 1  # one certificate, whatever the restarts re-sent
