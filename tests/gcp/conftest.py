"""Fixtures for the GCP tests: the real Pub/Sub emulator, mosquitto, a test CA, the bridge.

The emulator starts once per test session (per xdist worker) and must start: a
test that needs it fails, never skips, when it cannot. Each test gets a project
of its own on it, so tests do not see each other's topics.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from iot_remote_access.bridge.settings import BridgeSettings
from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.tree import Root
from iot_remote_access.pubsub.deploy import deploy
from iot_remote_access.pubsub.plan import plan
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.gcp_pubsub_stack import GcpPubsubStack
from tests.support.ca_service_standin import CaServiceStandIn
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator, MosquittoBroker, PubsubEmulator

_projects = itertools.count()

GCP_SETTINGS = {
    "projectNumber": "123456789012",
    "labels": {"suite": "bridge-tests"},
    "bridge": {"serviceAccount": "iot-bridge@test-project.iam.gserviceaccount.com"},
}


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubsubEmulator]:
    """The Google Cloud CLI's Pub/Sub emulator; PUBSUB_EMULATOR_HOST points at it."""
    emu = PubsubEmulator(tmp_path_factory.mktemp("pubsub-emulator"))
    emu.start()  # raises (the test errors) if it cannot start: nothing is skipped
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
    try:
        yield emu
    finally:
        emu.stop()
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    """The Google Cloud CLI's Firestore emulator; FIRESTORE_EMULATOR_HOST points at it."""
    emu = FirestoreEmulator(tmp_path_factory.mktemp("firestore-emulator"))
    emu.start()  # raises (the test errors) if it cannot start: nothing is skipped
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host
    try:
        yield emu
    finally:
        emu.stop()
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def acl() -> MosquittoAcl:
    return MosquittoAcl()


@pytest.fixture
def broker(tmp_path: Path, ca: TestCa, acl: MosquittoAcl) -> Iterator[MosquittoBroker]:
    """mosquitto with mutual TLS and the ACL rendered from the topic model."""
    server = MosquittoBroker(tmp_path / "broker", ca, acl.render())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def deploy_topology(project: str, settings: dict[str, object] | None = None) -> GcpPubsubStack:
    """Run the real plan + deploy for ``project`` on the emulator."""
    fleet = FleetSettings.parse({"gcp": settings or GCP_SETTINGS})
    assert fleet.gcp is not None
    stack = GcpPubsubStack(Root(), "PubSub", project=project, settings=fleet.gcp)
    desired = stack.desired_state()
    publisher, subscriber = pubsub_v1.PublisherClient(), subscriber_client()
    deploy(plan(desired, publisher, subscriber), desired, publisher, subscriber)
    return stack


def subscriber_client() -> pubsub_v1.SubscriberClient:
    return pubsub_v1.SubscriberClient()


@pytest.fixture
def project(emulator: PubsubEmulator) -> str:
    """A fresh project on the emulator with the topology deployed."""
    name = f"bridge-test-{os.getpid()}-{next(_projects)}"
    deploy_topology(name)
    return name


def bridge_environment(
    project: str, broker: MosquittoBroker, ca: TestCa, identity: str, **overrides: object
) -> dict[str, str]:
    """The BRIDGE_* variables a bridge replica needs for ``broker`` and ``project``."""
    creds = ca.client(identity)
    env = {
        "BRIDGE_PROJECT": project,
        "BRIDGE_MQTT_HOST": "127.0.0.1",
        "BRIDGE_MQTT_PORT": str(broker.port),
        "BRIDGE_MQTT_CA_FILE": str(creds.ca_file),
        "BRIDGE_MQTT_CERT_FILE": str(creds.cert_file),
        "BRIDGE_MQTT_KEY_FILE": str(creds.key_file),
        "BRIDGE_MQTT_CLIENT_ID": "bridge-0",
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_HTTP_PORT": "0",
        "BRIDGE_RECONNECT_MIN_SECONDS": "1",
        "BRIDGE_RECONNECT_MAX_SECONDS": "2",
        "BRIDGE_DRAIN_TIMEOUT_SECONDS": "10",
    }
    env.update({f"BRIDGE_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


@pytest.fixture
def bridge_settings(
    monkeypatch: pytest.MonkeyPatch,
    project: str,
    broker: MosquittoBroker,
    ca: TestCa,
    acl: MosquittoAcl,
) -> BridgeSettings:
    assert acl.bridge_identity is not None
    for key, value in bridge_environment(project, broker, ca, acl.bridge_identity).items():
        monkeypatch.setenv(key, value)
    return BridgeSettings.from_environment()


@pytest.fixture
def ca_service() -> Iterator[CaServiceStandIn]:
    """The CA Service STAND-IN (tests/support/ca_service_standin.py), started on a loopback
    port: ``ca_service.host`` for ``make_client``/``--ca-endpoint``, ``.requests`` to assert."""
    server = CaServiceStandIn()
    server.start()
    try:
        yield server
    finally:
        server.stop()
