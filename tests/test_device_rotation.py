"""The device rotation module end to end on AWS's protocol, over real mosquitto with mutual TLS.

The planner's command and the signer are a STAND-IN (tests/support/rotation_device.py)
that runs the signer Lambda's shared CSR checks (core/csr_policy.py) and issues with
the test CA. The device is the real module, in this process.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandSpec,
    new_command,
    parse_send_request,
)
from iot_remote_access.device.certificate_check import load_expected_cas
from iot_remote_access.device.commands import CommandDevice
from iot_remote_access.device.rotation import Broker, RotationDevice
from iot_remote_access.device.rotation_state import CredentialStore, Phase, Progress
from tests.support.processes import MosquittoBroker
from tests.support.rotation_device import (
    SIGNER_IDENTITY,
    SignerStandIn,
    SigningCa,
    provisioned_store,
    rotation_acl,
)

THING = "gateway-3"
OPERATORS = "arn:aws:iam::123456789012:role/iot-operators"
ALICE = "arn:aws:sts::123456789012:assumed-role/iot-operators/alice"


@dataclass
class World:
    ca: SigningCa
    foreign: SigningCa
    signer: SignerStandIn
    tmp: Path

    def device(self, *, trust_foreign: bool = False, **kwargs: object) -> RotationDevice:
        store = provisioned_store(self.tmp / "device", self.ca, THING)
        bundle = self.ca.ca_file.read_bytes()
        if trust_foreign:  # e.g. a fleet moving to a new CA the broker does not trust yet
            bundle += self.foreign.ca_file.read_bytes()
        return RotationDevice(
            thing=THING,
            store=store,
            broker=Broker("127.0.0.1", self.signer.port, server_ca_file=self.ca.ca_file),
            expected_cas=load_expected_cas(bundle),
            connect_timeout=5.0,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca = SigningCa(tmp_path / "pki")
    broker = MosquittoBroker(tmp_path / "mosquitto", ca, rotation_acl())
    broker.start()
    signer = SignerStandIn(
        broker.port, ca, ca.client(SIGNER_IDENTITY), foreign_ca=SigningCa(tmp_path / "foreign")
    )
    try:
        assert signer.foreign_ca is not None
        yield World(ca, signer.foreign_ca, signer, tmp_path)
    finally:
        signer.close()
        broker.stop()


def _wait(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _subject(store: CredentialStore, pair: str) -> str:
    leaf = x509.load_pem_x509_certificate(store.certificate_file(pair).read_bytes())
    return str(leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_rotates_reconnects_with_the_new_certificate_and_confirms(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    device = world.device()
    caplog.set_level(logging.DEBUG)
    device.start()
    try:
        world.signer.request_rotation(THING)  # the planner's command on the commands topic
        assert world.signer.confirms.get(timeout=20) == THING
        _wait(lambda: device.progress.current != "factory" and device.progress.previous is None)
        # The new private key never reached a log (its PEM armour or its base64 body).
        key_pem = (device.store.directory / "keys" / f"{device.progress.current}.key").read_text()
        body = "".join(key_pem.splitlines()[1:-1])
        assert "PRIVATE KEY" not in caplog.text and body[:40] not in caplog.text
        assert "checked and stored" in caplog.text  # the log did record the rotation
        progress = device.progress
        assert progress.phase is Phase.IDLE
        assert _subject(device.store, progress.current) == THING
        assert [p.name for p in (device.store.directory / "pairs").iterdir()] == [progress.current]
        assert device.client is not None and device.client.is_connected()
        assert world.signer.records[THING].state == "IDLE"
        # The CSR the signer saw: CN = the thing, nothing else (the shared checks passed it).
        csr = x509.load_pem_x509_csr(world.signer.csrs[0].encode())
        assert csr.subject.rfc4514_string() == f"CN={THING}"
    finally:
        device.stop()


@pytest.mark.parametrize(
    ("mode", "logged"),
    [
        ("other-name", "subject 'CN=another-thing'; allowed: exactly CN=gateway-3"),
        ("foreign-ca", "does not chain to the expected CA"),
        ("other-key", "its public key is not the key generated for this rotation"),
        ("garbage", "certificate message refused"),
    ],
)
def test_a_bad_certificate_is_not_installed_and_the_working_one_stays(
    world: World, caplog: pytest.LogCaptureFixture, mode: str, logged: str
) -> None:
    world.signer.mode = mode
    device = world.device()
    device.start()
    try:
        with caplog.at_level(logging.WARNING, logger="iot_remote_access.device.rotation"):
            world.signer.request_rotation(THING)
            world.signer.answers.get(timeout=20)
            _wait(lambda: logged in caplog.text)
        progress = device.progress
        assert progress.current == "factory" and progress.phase is Phase.SENT
        assert not device.store.certificate_file(str(progress.pending)).exists()
        assert device.client is not None and device.client.is_connected()
        assert world.signer.confirms.empty()
    finally:
        device.stop()


def test_a_rejection_abandons_the_pending_pair(world: World) -> None:
    world.signer.mode = "reject"
    device = world.device()
    device.start()
    try:
        world.signer.request_rotation(THING)
        assert world.signer.answers.get(timeout=20)["status"] == "rejected"
        keys = device.store.directory / "keys"
        _wait(lambda: [p.name for p in keys.iterdir()] == ["factory.key"])
        progress = device.progress
        assert progress.phase is Phase.IDLE and progress.pending is None
        assert progress.current == "factory"
    finally:
        device.stop()


def test_already_being_signed_is_not_a_reason_to_give_up(world: World) -> None:
    world.signer.mode = "busy"
    device = world.device()
    device.start()
    try:
        world.signer.request_rotation(THING)
        assert world.signer.confirms.get(timeout=20) == THING
        _wait(lambda: device.progress.current != "factory" and device.progress.previous is None)
    finally:
        device.stop()


def test_no_answer_within_the_attempt_timeout_abandons_the_pending_pair(world: World) -> None:
    world.signer.mode = "silent"
    device = world.device(attempt_timeout=1.0)
    device.start()
    try:
        world.signer.request_rotation(THING)
        world.signer.answers.get(timeout=20)
        keys = device.store.directory / "keys"
        _wait(lambda: [p.name for p in keys.iterdir()] == ["factory.key"])
        assert device.progress == Progress(Phase.IDLE, current="factory")
        assert device.client is not None and device.client.is_connected()
    finally:
        device.stop()


def test_a_certificate_that_cannot_connect_is_rolled_back_within_the_bound(world: World) -> None:
    """The device trusts a second CA the broker does not: the new certificate passes the
    device's checks, the broker refuses it, the device goes back to the old one."""
    world.signer.mode = "foreign-ca"
    steps: list[str] = []
    device = world.device(trust_foreign=True, switch_timeout=3.0, step_hook=steps.append)
    device.start()
    try:
        world.signer.request_rotation(THING)
        _wait(lambda: "switching" in steps)
        started = time.monotonic()
        _wait(lambda: device.progress.phase is Phase.IDLE and device.client is not None)
        assert time.monotonic() - started < 3.0 + 5.0 + 2.0  # bound + one connect attempt
        assert "connected" not in steps and "confirmed" not in steps
        assert device.progress.current == "factory"
        assert [p.name for p in (device.store.directory / "pairs").iterdir()] == ["factory"]
        _wait(lambda: device.client is not None and device.client.is_connected())
        assert world.signer.confirms.empty()
    finally:
        device.stop()


def test_the_remote_commands_module_shares_the_connection(world: World) -> None:
    """``CommandDevice`` attached through ``on_client`` keeps answering commands on the
    commands topic the rotation module also reads, before and after the switch."""
    catalogue = CommandCatalogue(
        (CommandSpec(name="diagnostics", purpose="maintenance", senders=(OPERATORS,)),)
    )
    commands = CommandDevice(
        thing=THING, catalogue=catalogue, handlers={"diagnostics": lambda _arguments: {}}
    )
    clients: list[mqtt.Client] = []

    def attach(client: mqtt.Client) -> None:
        clients.append(client)
        commands.attach(client)  # sets on_connect (chained) and its own topic callback

    answers: queue.Queue[bytes] = queue.Queue()
    world.signer.client.message_callback_add(
        "cmd/+/responses", lambda _c, _u, message: answers.put(bytes(message.payload))
    )
    world.signer.client.subscribe("cmd/+/responses", qos=1)

    def ask() -> dict[str, object]:
        request = parse_send_request(
            {"thing": THING, "name": "diagnostics", "reason": "INC-2", "purpose": "maintenance"},
            catalogue,
            requester=ALICE,
        )
        command = new_command(request, now=datetime.now(UTC))
        world.signer.client.publish("cmd/gateway-3/commands", command.payload(), qos=1)
        answer = json.loads(answers.get(timeout=10))
        assert answer["id"] == command.id
        return dict(answer)

    device = world.device(on_client=attach)
    device.start()
    try:
        assert ask()["status"] == "succeeded"
        world.signer.request_rotation(THING)
        _wait(lambda: device.progress.current != "factory" and device.progress.previous is None)
        assert len(clients) == 2 and clients[1] is device.client  # the factory's, then the new
        assert ask()["status"] == "succeeded"
    finally:
        device.stop()
        commands.close()
