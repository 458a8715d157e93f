"""LocalTestIssuer: a small local TEST ISSUER behind ``core.certificate_issuer.CertificateIssuer``.

A STAND-IN for a real certificate authority, backed by ``cryptography``, used by the
GCP rotation tests until the CA Service issuer (branch gcp-ca) is merged. What it does
like CA Service: signs the CSR's public key with a CA key, forces the subject CN to the
thing name whatever the CSR says, adds no SAN, only the key usages a device needs
(digitalSignature, clientAuth), the lifetime asked for, a request id that makes a retry
return the same certificate, revocation that may be repeated. What it does not do: any
API, IAM, CA pools, CRL publication, quotas (throttling is switched on by the test:
``throttle(n)`` makes the next ``n`` issuances raise ``IssuerThrottled``).

Its state lives in a directory (the CA key and certificate, one file per issued
request, one per revocation), so a rotation service in another process, or restarted,
sees the same issuer: ``from_environment`` reads ``LOCAL_TEST_ISSUER_DIR``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iot_remote_access.core.certificate_issuer import (
    IssuedCertificate,
    IssuerRefused,
    IssuerThrottled,
)

DIRECTORY_VARIABLE = "LOCAL_TEST_ISSUER_DIR"
POOL = "projects/local-test/locations/test/caPools/devices"


class LocalTestIssuer:
    """Issues from the CA in ``directory`` (``ca.key``, ``ca.pem``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        self._ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        (directory / "issued").mkdir(exist_ok=True)
        (directory / "revoked").mkdir(exist_ok=True)

    @classmethod
    def create(
        cls, directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
    ) -> LocalTestIssuer:
        """A new issuer state in ``directory`` for the CA ``ca`` (a test CA)."""
        directory.mkdir(parents=True, exist_ok=True)
        key_pem = ca_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / "ca.key").write_bytes(key_pem)
        (directory / "ca.key").chmod(0o600)
        (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        return cls(directory)

    # -- what the test controls and observes ----------------------------------------------

    def throttle(self, count: int) -> None:
        (self.directory / "throttle").write_text(str(count))

    def issued(self) -> list[dict[str, str]]:
        return [json.loads(p.read_text()) for p in sorted((self.directory / "issued").iterdir())]

    def revoked(self) -> set[str]:
        return {p.read_text() for p in (self.directory / "revoked").iterdir()}

    # -- CertificateIssuer ----------------------------------------------------------------

    def issue(
        self, thing: str, csr_pem: str, lifetime: dt.timedelta, request_id: str
    ) -> IssuedCertificate:
        record = self.directory / "issued" / f"{_safe(request_id)}.json"
        if record.exists():  # the same request again: the same certificate
            return _issued(json.loads(record.read_text()))
        self._take_throttle()
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except ValueError as error:
            raise IssuerRefused(f"csr: not parseable ({error})") from None
        if not csr.is_signature_valid:
            raise IssuerRefused("csr: its signature does not verify")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)]))
            .issuer_name(self._ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())  # type: ignore[arg-type]
        )
        fields = {
            "name": f"{POOL}/certificates/{_safe(request_id)}",
            "pem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "chain": self._ca.public_bytes(serialization.Encoding.PEM).decode(),
            "serial": format(certificate.serial_number, "x"),
            "notAfter": certificate.not_valid_after_utc.isoformat(),
            "thing": thing,
        }
        temporary = record.with_suffix(".tmp")
        temporary.write_text(json.dumps(fields))
        temporary.replace(record)
        return _issued(fields)

    def revoke(self, name: str) -> None:
        if not name.startswith(f"{POOL}/certificates/"):
            raise IssuerRefused(f"certificate: {name[:80]!r} is not one of this CA pool's")
        self._take_throttle()
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        (self.directory / "revoked" / digest).write_text(name)

    def _take_throttle(self) -> None:
        path = self.directory / "throttle"
        left = int(path.read_text()) if path.exists() else 0
        if left > 0:
            path.write_text(str(left - 1))
            raise IssuerThrottled("local test issuer: throttled on purpose (quota exceeded)")


def _issued(fields: dict[str, str]) -> IssuedCertificate:
    return IssuedCertificate(
        name=fields["name"],
        pem=fields["pem"],
        chain_pem=(fields["chain"],),
        serial_hex=fields["serial"],
        not_after=dt.datetime.fromisoformat(fields["notAfter"]),
    )


def _safe(request_id: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "_" for c in request_id)[:63]


def from_environment() -> LocalTestIssuer:
    """The issuer a service process uses: ``ROTATION_ISSUER=tests.support.local_test_issuer``."""
    return LocalTestIssuer(Path(os.environ[DIRECTORY_VARIABLE]))
