"""The Azure rotation end to end with the real device module: service -> IoT Hub service
STAND-IN -> mosquitto (standing in for IoT Hub's MQTT side) -> ``AzureRotationDevice``,
which re-registers with a DPS STAND-IN (mutual TLS) using each pair before it connects.

Real parts: the rotation service, its issuer over a CA key on disk, mosquitto with
mutual TLS, the device module's key store, checks, state file and switch. Stand-ins
(named and described in tests/support): IoT Hub's service API and MQTT side, DPS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iot_remote_access.arm.ca_issuer import EnrollmentGroupCaIssuer
from iot_remote_access.arm.direct_methods import DirectMethodClient
from iot_remote_access.arm.hub_service import TwinClient
from iot_remote_access.arm.proof_of_possession import load_ca_key
from iot_remote_access.arm.rotation_service import AzureRotationService
from iot_remote_access.arm.twin_inventory import TwinInventory
from iot_remote_access.core.rotation_plan import RotationSettings
from iot_remote_access.core.stagger import StaggerPolicy
from iot_remote_access.device.dps import Dps
from iot_remote_access.device.rotation import Broker
from iot_remote_access.device.rotation_azure import AzureRotationDevice
from iot_remote_access.device.rotation_state import Phase
from tests.support.azure_device_side import DpsStandIn, HubMqttStandIn
from tests.support.azure_rotation import Credential, certificate_tags
from tests.support.iot_hub_service_standin import IotHubServiceStandIn
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker
from tests.support.rotation_device import SigningCa, provisioned_store

THING = "sensor-7"
SCOPE = "0ne0000ABCD"
ACL = f"user {THING}\ntopic readwrite $iothub/#\nuser iothub-standin\ntopic readwrite $iothub/#\n"


@dataclass
class World:
    ca: SigningCa
    hub: IotHubServiceStandIn
    dps: DpsStandIn
    broker: MosquittoBroker
    bridge: HubMqttStandIn
    tmp: Path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca = SigningCa(tmp_path / "group-ca")  # the enrollment group's CA; mosquitto trusts it
    broker = MosquittoBroker(tmp_path / "mosquitto", ca, ACL)
    broker.start()
    with (
        IotHubServiceStandIn(TestCa(tmp_path / "service-tls")) as hub,
        DpsStandIn(ca, id_scope=SCOPE, assigned_hub="localhost") as dps,
    ):
        bridge = HubMqttStandIn(hub, THING, broker.port, ca)
        try:
            yield World(ca, hub, dps, broker, bridge, tmp_path)
        finally:
            bridge.close()
            broker.stop()


def _service(world: World) -> AzureRotationService:
    key_file = world.tmp / "group-ca.key"
    key_file.write_bytes(
        world.ca._key.private_bytes(  # the test CA's key, as the operator's key file
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificate = x509.load_pem_x509_certificate(world.ca.ca_file.read_bytes())
    credential, verify = Credential(), str(world.hub.ca_file)
    return AzureRotationService(
        inventory=TwinInventory(
            TwinClient(world.hub.endpoint, credential, connection_verify=verify)
        ),
        methods=DirectMethodClient(world.hub.endpoint, credential, connection_verify=verify),
        issuer=EnrollmentGroupCaIssuer(certificate, load_ca_key(key_file, certificate=certificate)),
        # The test CA lives two days: one-day certificates (the stagger is tested elsewhere).
        policy=StaggerPolicy(base_days=1, window_days=1),
        settings=RotationSettings(hourly_budget=5),
    )


def _wait(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_device_rotates_through_direct_methods_re_registers_with_dps_and_confirms(
    world: World,
) -> None:
    store = provisioned_store(world.tmp / "device", world.ca, THING)
    factory = x509.load_pem_x509_certificate(store.certificate_file("factory").read_bytes())
    world.hub.register(
        THING,
        certificate_tags(
            factory.not_valid_after_utc, serial=f"{factory.serial_number:x}"
        ),  # due: the factory certificate expires tomorrow
    )
    device = AzureRotationDevice(
        thing=THING,
        store=store,
        broker=Broker("set-by-dps", world.broker.port, server_ca_file=world.ca.ca_file),
        expected_cas=(x509.load_pem_x509_certificate(world.ca.ca_file.read_bytes()),),
        dps=Dps(SCOPE, host="127.0.0.1", port=world.dps.port, server_ca_file=world.ca.ca_file),
        connect_timeout=5.0,
        switch_timeout=20.0,
    )
    device.start()
    try:
        service = _service(world)
        report = service.run_once()
        assert report.issued == [THING], report
        _wait(lambda: device.progress.current != "factory" and device.progress.previous is None)
        assert device.progress.phase is Phase.IDLE
        new = x509.load_pem_x509_certificate(
            store.certificate_file(device.progress.current).read_bytes()
        )
        assert device.client is not None and device.client.is_connected()

        # DPS saw the factory certificate first, then the new one: the re-provisioning.
        registrations = [r for r in world.dps.requests if r.method == "PUT"]
        assert [r.presented_serial for r in registrations] == [
            factory.serial_number,
            new.serial_number,
        ]
        assert all(
            r.path == f"/{SCOPE}/registrations/{THING}/register"
            and r.query == {"api-version": "2021-10-01"}
            and r.body == {"registrationId": THING}
            for r in registrations
        )
        assert device.hub == "localhost"

        _wait(lambda: "certificateRotation" in world.hub.twins[THING]["properties"]["reported"])
        confirmed = service.run_once()
        assert confirmed.confirmed == [THING]
        tags = world.hub.twins[THING]["tags"]["certificate"]
        assert tags["serial"] == f"{new.serial_number:x}" and tags["state"] == "IDLE"
        assert service.issuer.revoked == {f"{factory.serial_number:x}"}  # type: ignore[attr-defined]
        assert not store.has_certificate("factory")  # the old pair is gone from the device
    finally:
        device.stop()


def test_a_certificate_dps_refuses_leaves_the_device_on_its_old_pair(world: World) -> None:
    """A certificate from a CA the group does not trust: DPS's TLS handshake refuses it,
    the switch times out, and the device goes back to the working pair."""
    foreign = SigningCa(world.tmp / "foreign")
    store = provisioned_store(world.tmp / "device", world.ca, THING)
    device = AzureRotationDevice(
        thing=THING,
        store=store,
        broker=Broker("set-by-dps", world.broker.port, server_ca_file=world.ca.ca_file),
        expected_cas=tuple(
            x509.load_pem_x509_certificates(
                world.ca.ca_file.read_bytes() + foreign.ca_file.read_bytes()
            )
        ),
        dps=Dps(SCOPE, host="127.0.0.1", port=world.dps.port, server_ca_file=world.ca.ca_file),
        connect_timeout=3.0,
        switch_timeout=4.0,
    )
    device.start()
    try:
        _wait(lambda: device.client is not None and device.client.is_connected())
        status, answer = world.bridge.call("requestCsr", {})
        assert status == 200
        csr = x509.load_pem_x509_csr(answer["csr"].encode())
        pem = foreign.sign(csr, THING)
        status, answer = world.bridge.call(
            "installCertificate", {"status": "issued", "certificatePem": pem}
        )
        assert (status, answer) == (200, {"status": "accepted"})
        _wait(
            lambda: (
                device.progress.pending is None
                and device.client is not None
                and device.client.is_connected()
            ),
            30,
        )
        assert device.progress.phase is Phase.IDLE and device.progress.current == "factory"
        # DPS refused the foreign certificate in the handshake: no registration with it.
        assert {r.presented_cn for r in world.dps.requests} == {THING}
        assert len({r.presented_serial for r in world.dps.requests}) == 1
    finally:
        device.stop()


def test_unknown_methods_and_garbage_certificates_change_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    store = provisioned_store(world.tmp / "device", world.ca, THING)
    device = AzureRotationDevice(
        thing=THING,
        store=store,
        broker=Broker("set-by-dps", world.broker.port, server_ca_file=world.ca.ca_file),
        expected_cas=(x509.load_pem_x509_certificate(world.ca.ca_file.read_bytes()),),
        dps=Dps(SCOPE, host="127.0.0.1", port=world.dps.port, server_ca_file=world.ca.ca_file),
        connect_timeout=5.0,
    )
    device.start()
    try:
        _wait(lambda: device.client is not None and device.client.is_connected())
        assert world.bridge.call("reboot", {}) == (404, {"error": "no method 'reboot'"})
        # A certificate nobody asked for (no rotation under way) is ignored ...
        garbage = {"status": "issued", "certificatePem": "-----BEGIN CERTIFICATE-----\nAAAA"}
        assert world.bridge.call("installCertificate", garbage) == (200, {"status": "accepted"})
        # ... and so is one that does not parse while a rotation waits for its certificate.
        status, answer = world.bridge.call("requestCsr", {})
        assert status == 200 and "BEGIN CERTIFICATE REQUEST" in answer["csr"]
        world.bridge.call("installCertificate", garbage)
        _wait(lambda: "does not parse as PEM X.509" in caplog.text)
        progress = device.progress
        assert progress.current == "factory" and progress.phase is Phase.SENT
        # The CSR is asked for again (a service retry): the same CSR, the same key.
        assert world.bridge.call("requestCsr", {}) == (200, answer)
    finally:
        device.stop()
