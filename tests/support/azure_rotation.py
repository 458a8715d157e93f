"""Parts for the Azure rotation tests: the enrollment group's CA on disk, a token credential,
device twins with certificate tags, and a DEVICE STAND-IN answering the rotation's direct
methods.

The device stand-in is the smallest honest device: it generates its key, answers
``requestCsr`` with a CSR, checks what ``installCertificate`` brings with the device
module's own ``check_issued`` and, when it installs it, reports the serial as the real
device reports it after connecting with the new certificate
(``IotHubServiceStandIn.report``). The real device module is exercised in
``test_rotation_azure_device.py``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iot_remote_access.arm.twin_inventory import stamp
from iot_remote_access.device.certificate_check import CertificateRefused, check_issued
from tests.support.iot_hub_service_standin import IotHubServiceStandIn


class Credential:
    """A TokenCredential with a fixed (unsigned) token; records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("eyJhbGciOiJub25lIn0.e30.sig", int(time.time()) + 3600)


@dataclass(frozen=True)
class GroupCa:
    """The enrollment group's intermediate CA: certificate and key files."""

    cert_file: Path
    key_file: Path
    certificate: x509.Certificate


def make_group_ca(directory: Path, *, days: int = 3650) -> GroupCa:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet enrollment group CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "group-ca.pem", directory / "group-ca.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return GroupCa(cert_file, key_file, certificate)


def certificate_tags(not_after: dt.datetime, serial: str = "01", **more: Any) -> dict[str, Any]:
    return {
        "certificate": {
            "serial": serial,
            "notAfter": stamp(not_after),
            "expiryDay": not_after.date().isoformat(),
            "state": "IDLE",
            "attempts": 0,
            **more,
        }
    }


def csr_pem(common_name: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass
class DeviceStandIn:
    """Answers ``requestCsr`` and ``installCertificate`` for ``thing`` behind the hub stand-in."""

    hub: IotHubServiceStandIn
    thing: str
    ca: x509.Certificate
    #: What it sends instead of its own CSR (a hostile device), when set.
    csr_override: str | None = None
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    installed: list[x509.Certificate] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Made once and kept, as the device keeps its CSR on disk until the rotation ends.
        self.csr = self.csr_override or csr_pem(self.thing, self.key)
        self.hub.answer_methods(self.thing, self.answer)

    def answer(self, method: str, payload: Any) -> tuple[int, Any]:
        if method == "requestCsr":
            return 200, {"csr": self.csr}
        if method != "installCertificate":
            return 404, {"error": f"no method {method}"}
        self.messages.append(payload)
        if payload.get("status") != "issued":
            return 200, {"status": "abandoned"}
        public_key = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            leaf = check_issued(
                payload.get("certificatePem"),
                thing=self.thing,
                expected_cas=(self.ca,),
                public_key_der=public_key,
                now=dt.datetime.now(dt.UTC),
            )
        except CertificateRefused as refused:
            return 400, {"status": "refused", "reason": str(refused)}
        self.installed.append(leaf)
        # What the device does once connected with it: report its serial.
        self.hub.report(self.thing, {"certificateRotation": {"serial": f"{leaf.serial_number:x}"}})
        return 200, {"status": "installed"}
