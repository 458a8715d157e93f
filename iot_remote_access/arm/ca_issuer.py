"""The enrollment group's own CA as a ``CertificateIssuer`` (``core/certificate_issuer.py``).

Azure's Microsoft-backed issuance (a CSR in the DPS registration, Azure Device Registry
credential policies) is preview only and out of reach of the pinned SDKs
(docs/azure-rotation.md), so the rotation service signs with the intermediate CA that
the DPS enrollment group and IoT Hub already trust. A certificate it signs therefore
passes DPS's X.509 attestation and IoT Hub's CA authentication with nothing registered
per device, and its validity is ours to choose: the staggered lifetimes of ``core/stagger``.

What it signs, whatever the CSR asks: subject exactly ``CN=<thing>``; no subjectAltName;
key usage digitalSignature, extended key usage clientAuth; not a CA; the CSR's own public
key after checking the CSR's signature (proof the requester holds the key); never valid
past the signing CA. The CA key (a file or Key Vault, ``arm/key_vault.py``) stays inside
:class:`~iot_remote_access.arm.proof_of_possession.CaKey`.

``revoke`` is bookkeeping only: IoT Hub checks no revocation list for CA-authenticated
devices, and DPS can only disable a registration id (which the new certificate shares).
The revoked serials are kept (``revoked``) for the service to record; the old certificate
remains technically valid until its not-after, which is why rotation keeps lifetimes
bounded and the inventory keeps the old serial.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iot_remote_access.arm.proof_of_possession import CaKey, pem
from iot_remote_access.core.certificate_issuer import IssuedCertificate, IssuerRefused

#: Issuances remembered for idempotent retries (a day's hourly budget, and more).
REMEMBERED = 50_000
#: Backdating of notBefore for devices whose clocks lag.
BACKDATE = timedelta(minutes=5)
_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


class EnrollmentGroupCaIssuer:
    """Signs device certificates with the enrollment group's CA.

    :param ca_certificate: the signing CA (the one the enrollment group names).
    :param ca_key: its key (``load_ca_key`` or ``read_ca_key_secret``).
    :param chain: certificates above the signing CA, sent with each leaf. Default: none.
    :param clock: the time. Default: now (UTC).
    """

    def __init__(
        self,
        ca_certificate: x509.Certificate,
        ca_key: CaKey,
        *,
        chain: Sequence[x509.Certificate] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ca_certificate = ca_certificate
        self._key = ca_key
        self._chain = (pem(ca_certificate), *(pem(c) for c in chain))
        self._clock = clock
        # Recent issuances by request id (a retry within this process gets the same one);
        # across processes the inventory's stored certificate does that job.
        self._issued: OrderedDict[str, IssuedCertificate] = OrderedDict()
        self._lock = threading.Lock()
        self.revoked: set[str] = set()

    def issue(
        self, thing: str, csr_pem: str, lifetime: timedelta, request_id: str
    ) -> IssuedCertificate:
        with self._lock:
            earlier = self._issued.get(request_id)
            if earlier is not None:
                return earlier
            issued = self._sign(thing, csr_pem, lifetime, request_id)
            self._issued[request_id] = issued
            if len(self._issued) > REMEMBERED:
                self._issued.popitem(last=False)
            return issued

    def revoke(self, name: str) -> None:
        with self._lock:
            self.revoked.add(name)

    def _sign(
        self, thing: str, csr_pem: str, lifetime: timedelta, request_id: str
    ) -> IssuedCertificate:
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise IssuerRefused("csr: does not parse as a PEM certificate request") from None
        if not csr.is_signature_valid:
            raise IssuerRefused("csr: its signature does not verify with its own public key")
        now = self._clock().replace(microsecond=0)
        not_after = now + lifetime
        if lifetime <= timedelta(0) or not_after > self.ca_certificate.not_valid_after_utc:
            raise IssuerRefused(
                f"lifetime: {lifetime.days} days ends after the CA "
                f"({self.ca_certificate.not_valid_after_utc.date()}); allowed: a positive "
                "lifetime within the CA's validity (renew the CA first)"
            )
        public_key = csr.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)]))
            .issuer_name(self.ca_certificate.subject)
            .public_key(public_key)
            .serial_number(_serial(request_id))
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_KEY_USAGE, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.ca_certificate.public_key()  # type: ignore[arg-type]
                ),
                critical=False,
            )
        )
        leaf = self._key.sign(builder)
        serial = f"{leaf.serial_number:x}"
        return IssuedCertificate(
            name=serial,
            pem=leaf.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            chain_pem=self._chain,
            serial_hex=serial,
            not_after=leaf.not_valid_after_utc,
        )


def _serial(request_id: str) -> int:
    """A positive 159-bit serial derived from the request id (RFC 5280: at most 20 octets),
    so a retried request that reaches a fresh process still gets the same serial."""
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:20], "big") >> 1 or 1
