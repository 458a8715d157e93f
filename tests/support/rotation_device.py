"""Parts for the device-rotation tests: a CA that signs CSRs, a SIGNER STAND-IN on real MQTT,
the broker's ACL, and a provisioned device store.

The signer stand-in is not AWS: it plays the signer Lambda's part of the protocol on
mosquitto (CSR in on ``rot/{thing}/csr``, certificate out on ``rot/{thing}/certificate``
with the Lambda's body) and runs the *same* shared checks the Lambda runs
(``core/csr_policy.py``), then issues with the test CA instead of ACM Private CA.
Its ``mode`` makes it misbehave on purpose (another thing's name, a foreign CA, a
certificate for another key, garbage) to test the device's refusals.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iot_remote_access.core.csr_policy import (
    ALREADY_BEING_SIGNED,
    CsrRefusal,
    Verdict,
    rotation_verdict,
    screen_csr,
)
from iot_remote_access.core.mosquitto_acl import render_mosquitto_acl
from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.core.topics import DeviceAccess, TopicModel, render_topic, thing_from_topic
from iot_remote_access.device.keystore import FileKeyStore
from iot_remote_access.device.rotation_state import CredentialStore
from tests.support.mqtt_iot_data import mqtt5_client
from tests.support.pki import ClientCredentials, TestCa

SIGNER_IDENTITY = "aws-iot.rotation-signer-standin"  # a '.': no thing name carries its rights
TOPICS = TopicModel()


class SigningCa(TestCa):
    """The test CA, also signing device CSRs the way the rotation's CA does (CN forced)."""

    __test__ = False

    def sign(
        self,
        csr: x509.CertificateSigningRequest,
        common_name: str,
        *,
        public_key: object | None = None,
        days: int = 1,
    ) -> str:
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(public_key or csr.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()


def rotation_acl() -> str:
    """Devices: the ACL rendered from the topic model with rotation on; the stand-ins
    (signer and planner) read CSRs and confirmations and write certificates and commands."""
    access = DeviceAccess(rotation=True, command_responses=True)
    devices = render_mosquitto_acl(access, bridge_identity=None)
    return (
        f"{devices}\nuser {SIGNER_IDENTITY}\ntopic read rot/+/csr\ntopic read rot/+/confirm\n"
        "topic write rot/+/certificate\ntopic write cmd/+/commands\ntopic read cmd/+/responses\n"
    )


@dataclass
class Record:
    """What the stand-in's inventory keeps per thing (the Lambda's item, in short)."""

    state: str = RotationState.REQUESTED
    fingerprint: str | None = None
    certificate: str | None = None


@dataclass
class SignerStandIn:
    """STAND-IN for the AWS signer and confirm Lambdas, and the planner's rotate command."""

    port: int
    ca: SigningCa
    credentials: ClientCredentials
    #: good | other-name | foreign-ca | other-key | garbage | reject | silent | busy
    mode: str = "good"
    foreign_ca: SigningCa | None = None
    records: dict[str, Record] = field(default_factory=dict)
    confirms: queue.Queue[str] = field(default_factory=queue.Queue)
    answers: queue.Queue[dict[str, object]] = field(default_factory=queue.Queue)
    csrs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = mqtt5_client(SIGNER_IDENTITY, self.credentials)
        self.client.message_callback_add("rot/+/csr", self._on_csr)
        self.client.message_callback_add("rot/+/confirm", self._on_confirm)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        info = self.client.subscribe([("rot/+/csr", 1), ("rot/+/confirm", 1)])
        assert info[0] == mqtt.MQTT_ERR_SUCCESS

    def request_rotation(self, thing: str) -> None:
        """The planner's dispatch: REQUESTED in the inventory, the command on the device."""
        with self._lock:
            self.records[thing] = Record()
        command = {"type": "rotate-certificate", "attempt": 1}
        topic = render_topic(TOPICS.commands, thing)
        self.client.publish(topic, json.dumps(command), qos=1).wait_for_publish(5)

    def _on_csr(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        thing = thing_from_topic(TOPICS.rotation_csr, message.topic)
        assert thing is not None
        try:
            document = json.loads(message.payload)
            self.csrs.append(str(document.get("csr")))
            body = self._sign(thing, document.get("csr"))
        except CsrRefusal as refusal:
            body = {"status": "rejected", "reason": refusal.reason}
        self.answers.put(body)
        if self.mode == "silent":  # a signer that never answers
            return
        topic = render_topic(TOPICS.rotation_certificate, thing)
        if self.mode == "busy":  # a re-sent CSR raced the first: refused, then issued
            busy = {"status": "rejected", "reason": ALREADY_BEING_SIGNED}
            self.client.publish(topic, json.dumps(busy).encode(), qos=1)
        payload = b"\x00garbage\xff" if self.mode == "garbage" else json.dumps(body).encode()
        self.client.publish(topic, payload, qos=1)

    def _sign(self, thing: str, pem: object) -> dict[str, object]:
        csr_info = screen_csr(pem, thing)  # the signer Lambda's own checks
        if self.mode == "reject":
            raise CsrRefusal(409, "csr: refused on purpose by the stand-in")
        with self._lock:
            record = self.records.get(thing)
            verdict = rotation_verdict(
                thing,
                csr_info,
                state=None if record is None else record.state,
                fingerprint_on_record=None if record is None else record.fingerprint,
            )
            assert record is not None
            if verdict is Verdict.ISSUE:
                record.certificate = self._issue(thing, csr_info.pem())
                record.state, record.fingerprint = RotationState.ISSUED, csr_info.fingerprint
            return {"status": "issued", "certificatePem": record.certificate}

    def _issue(self, thing: str, csr_pem: str) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.is_signature_valid  # ACM Private CA's own check
        if self.mode == "other-name":
            return self.ca.sign(csr, "another-thing")
        if self.mode == "foreign-ca":
            assert self.foreign_ca is not None
            return self.foreign_ca.sign(csr, thing)
        if self.mode == "other-key":
            return self.ca.sign(
                csr, thing, public_key=ec.generate_private_key(ec.SECP256R1()).public_key()
            )
        return self.ca.sign(csr, thing)

    def _on_confirm(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        thing = thing_from_topic(TOPICS.rotation_confirm, message.topic)
        assert thing is not None
        with self._lock:
            record = self.records.get(thing)
            if record is not None and record.state == RotationState.ISSUED:
                record.state = RotationState.IDLE
        self.confirms.put(thing)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def provisioned_store(directory: Path, ca: TestCa, thing: str) -> CredentialStore:
    """A device store whose factory pair is a certificate from ``ca`` for ``thing``."""
    factory = ca.client(thing)
    keys = FileKeyStore(directory / "keys")
    keys.import_key("factory", factory.key_file.read_bytes())
    store = CredentialStore(directory, keys)
    store.provision(factory.cert_file.read_bytes())
    return store
