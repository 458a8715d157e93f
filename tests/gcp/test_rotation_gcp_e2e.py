"""Certificate rotation on GCP, end to end on real parts.

The device module (``device/rotation.py``) on real mosquitto over mutual TLS -> the
bridge (its own code, pointed at the rotation topics; in this process) -> the Pub/Sub
emulator -> the rotation service (``python -m iot_remote_access.pubsub.rotation serve``
in a subprocess, the Firestore emulator as its inventory, ``CaServiceIssuer`` against
the CA Service STAND-IN as its CA) -> the certificate back through Pub/Sub and the
bridge -> the device checks it, reconnects with it and confirms -> the old certificate
is revoked at the CA. The broker trusts the stand-in's root, as it must trust CA
Service's before devices rotate onto it (docs/gcp-rotation.md).

The daily planner's dispatch tells the device (the rotate command it publishes on the
commands topic is relayed to the device's commands topic as the main bridge does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1

from iot_remote_access.bridge.service import BridgeService
from iot_remote_access.bridge.settings import BridgeSettings
from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.rotation_plan import RotationSettings, RotationState
from iot_remote_access.core.topics import DeviceAccess
from iot_remote_access.device.certificate_check import load_expected_cas
from iot_remote_access.device.rotation import Broker, RotationDevice
from iot_remote_access.device.rotation_state import Phase
from iot_remote_access.pubsub.rotation_planner import GcpRotationPlanner
from iot_remote_access.settings import FleetSettings
from tests.gcp.conftest import bridge_environment
from tests.support.ca_service_standin import CaServiceStandIn, ready_issuer
from tests.support.gcp_clients import wait_for
from tests.support.gcp_rotation import (
    ROTATION_BRIDGE_IDENTITY,
    Fleet,
    deploy_rotation_topology,
    fresh_project,
    issued_device_store,
    rotation_bridge_overrides,
)
from tests.support.mqtt_iot_data import mqtt5_client
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator, MosquittoBroker, PubsubEmulator, stop_group

THING = "gw-rot-1"


@dataclass
class World:
    fleet: Fleet
    broker: MosquittoBroker
    ca: TestCa
    tmp: Path
    emulators: tuple[PubsubEmulator, FirestoreEmulator]
    standin: CaServiceStandIn
    store: Any
    old: str
    service: subprocess.Popen[bytes] | None = None

    def service_env(self, **extra: str) -> dict[str, str]:
        pubsub, firestore = self.emulators
        return {
            **os.environ,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "FIRESTORE_EMULATOR_HOST": firestore.host,
            "ROTATION_PROJECT": self.fleet.project,
            "ROTATION_CA_POOL": self.fleet.issuer.pool,
            "ROTATION_CA_ENDPOINT": self.standin.host,
            "ROTATION_HTTP_HOST": "127.0.0.1",
            "ROTATION_HTTP_PORT": "0",
            "ROTATION_RETRY_SECONDS": "1",
            "ROTATION_ISSUING_LEASE_SECONDS": "2",
            **extra,
        }

    def start_service(self, **extra: str) -> None:
        log = (self.tmp / "service.log").open("ab")
        self.service = subprocess.Popen(
            [sys.executable, "-m", "iot_remote_access.pubsub.rotation", "serve"],
            env=self.service_env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_service(self, sig: int = 15) -> None:
        if self.service is not None:
            stop_group(self.service, sig=sig)
            self.service = None

    @property
    def bundle(self) -> Path:
        return self.tmp / "trusted-cas.pem"

    def revoked(self) -> set[str]:
        return {
            name
            for name, certificate in self.standin.certificates.items()
            if certificate.revocation_details.revocation_state
        }

    def issued(self) -> list[str]:
        return sorted(self.standin.certificates)

    def log(self) -> str:
        path = self.tmp / "service.log"
        code = None if self.service is None else self.service.poll()
        text = path.read_text(errors="replace")[-3000:] if path.exists() else ""
        item = self.fleet.inventory.get(THING) or {}
        state = {k: v for k, v in item.items() if "Pem" not in k}
        calls = self.standin.methods_called()[-6:]
        return f"service exit code {code}; {state}; CA calls {calls}; log:\n{text}"

    def device(self) -> RotationDevice:
        return RotationDevice(
            thing=THING,
            store=self.store,
            broker=Broker("127.0.0.1", self.broker.port, server_ca_file=self.ca.ca_file),
            expected_cas=load_expected_cas(self.bundle.read_bytes()),
            connect_timeout=5.0,
            switch_timeout=30.0,
        )


@pytest.fixture
def world(
    tmp_path: Path,
    ca: TestCa,
    emulator: PubsubEmulator,
    firestore_emulator: FirestoreEmulator,
    ca_service: CaServiceStandIn,
) -> Iterator[World]:
    project = fresh_project("rot-e2e")
    settings = FleetSettings.parse(
        {
            "gcp": {
                "projectId": project,
                "projectNumber": "123456789012",
                "bridge": {"serviceAccount": f"iot-bridge@{project}.iam.gserviceaccount.com"},
                "certificateAuthority": {"location": "europe-west1"},
            }
        }
    )
    fleet = Fleet(tmp_path, ca, project, issuer=ready_issuer(ca_service, settings, project))
    store, enrolled = issued_device_store(tmp_path / "device", fleet, THING)
    bundle = tmp_path / "trusted-cas.pem"  # the broker's trust: the test CA and CA Service's
    bundle.write_text(ca.ca_file.read_text() + "".join(enrolled.chain_pem))
    deploy_rotation_topology(fleet.project)  # the real `gcp deploy` code, rotation included
    acl = MosquittoAcl(
        DeviceAccess(rotation=True), rotation_bridge_identity=ROTATION_BRIDGE_IDENTITY
    ).render()
    broker = MosquittoBroker(tmp_path / "broker", ca, acl)
    broker.config_file.write_text(
        broker.config_file.read_text().replace(f"cafile {ca.ca_file}", f"cafile {bundle}")
    )
    broker.start()
    env = bridge_environment(
        fleet.project, broker, ca, ROTATION_BRIDGE_IDENTITY, **rotation_bridge_overrides()
    )
    bridge = BridgeService(
        BridgeSettings(**{k.removeprefix("BRIDGE_").lower(): v for k, v in env.items()})
    )
    bridge.start()
    emulators = (emulator, firestore_emulator)
    world = World(fleet, broker, ca, tmp_path, emulators, ca_service, store, enrolled.name)
    try:
        wait_for(lambda: bridge.ready()[0], 20, "rotation bridge readiness")
        yield world
    finally:
        world.stop_service()
        bridge.stop(drain=False)
        broker.stop()


def _tell_device(world: World, device: RotationDevice) -> None:
    """The planner's dispatch, and the main bridge's relay of its command to the device."""
    fleet = world.fleet
    planner = GcpRotationPlanner(
        inventory=fleet.inventory,
        protocol=fleet.protocol(),
        publisher=pubsub_v1.PublisherClient(),
        commands_topic=f"projects/{fleet.project}/topics/iot-commands",
        settings=RotationSettings(),
    )
    now = datetime.now(UTC)
    planner.plan(now)  # the certificate expires in 40 days: due, scheduled this hour
    item = fleet.inventory.get(THING)
    assert item is not None and item["rotationState"] == "SCHEDULED"
    hour = datetime.strptime(item["slotHour"], "%Y-%m-%dT%H").replace(tzinfo=UTC)
    assert planner.dispatch(hour).counts["requested"] == 1
    subscriber = pubsub_v1.SubscriberClient()
    path = f"projects/{fleet.project}/subscriptions/iot-commands-bridge"
    received = subscriber.pull(subscription=path, max_messages=1, timeout=10).received_messages
    (command,) = received
    assert command.message.attributes["thing"] == THING
    relay = mqtt5_client("bridge.iot-remote-access", world.ca.client("bridge.iot-remote-access"))
    relay.connect("127.0.0.1", world.broker.port)
    relay.loop_start()
    relay.publish(f"cmd/{THING}/commands", command.message.data, qos=1).wait_for_publish(5)
    relay.disconnect()
    relay.loop_stop()


def _rotated(world: World, device: RotationDevice, old: str, timeout: float = 60) -> None:
    fleet = world.fleet
    wait_for(
        lambda: (fleet.inventory.get(THING) or {}).get("lastRevokedCertificateId") == old,
        timeout,
        f"the rotation to complete: {world.log()}",
    )
    assert device.wait_idle(20)
    progress = device.progress
    assert progress.phase is Phase.IDLE and progress.current != "factory"
    assert device.client is not None and device.client.is_connected()  # on the new pair
    item = fleet.inventory.get(THING)
    assert item is not None and item["rotationState"] == RotationState.IDLE
    assert world.revoked() == {old}  # at the CA (the stand-in's record of RevokeCertificate)
    assert world.issued() == sorted([old, item["certificateId"]])  # exactly one issued


def test_a_device_rotates_through_the_bridge_pubsub_and_the_rotation_service(
    world: World,
) -> None:
    device = world.device()
    world.start_service()
    device.start()
    try:
        _tell_device(world, device)
        _rotated(world, device, world.old)
    finally:
        device.stop()


@pytest.mark.parametrize("fault", ["throttled", "service-killed-after-issuing"])
def test_faults_leave_the_device_with_a_working_certificate(world: World, fault: str) -> None:
    device = world.device()
    if fault == "throttled":
        world.standin.create_certificate_qps = 0  # RESOURCE_EXHAUSTED until set back
        world.start_service()
    else:
        world.start_service(ROTATION_ISSUER="tests.support.crashing_issuer")
    device.start()
    try:
        _tell_device(world, device)
        if fault == "throttled":
            creates = lambda: world.standin.methods_called().count("CreateCertificate")  # noqa: E731
            wait_for(lambda: creates() >= 3, 30, "two refused CreateCertificate calls")
            assert world.issued() == [world.old]  # refused: nothing issued
            world.standin.create_certificate_qps = 7
        if fault == "service-killed-after-issuing":
            assert world.service is not None
            assert world.service.wait(30) == 70  # it issued, then died before recording it
            item = world.fleet.inventory.get(THING)
            assert item is not None and item["rotationState"] == "ISSUING"
            # The device still has its old pair, and it still connects.
            assert device.progress.current == "factory"
            assert device.client is not None and device.client.is_connected()
            world.service = None
            world.start_service()  # a new replica: takes the redelivered CSR over
        # After a kill, Pub/Sub redelivers the CSR only when its ack deadline (30 s) runs
        # out; on a loaded 2-core CI machine the whole rotation then took over 90 s once.
        _rotated(world, device, world.old, timeout=180)
    finally:
        device.stop()
