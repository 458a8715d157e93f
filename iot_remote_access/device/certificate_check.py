"""Decide whether a certificate that arrived for this device may be installed.

Whatever arrives on the certificate topic is untrusted until checked: it must chain
to the CA the device was told to expect (through intermediates it carries, at
most a few), name exactly this thing (subject = one CN, the thing name; no
subjectAltName), not be a CA, be valid now, and carry the public key of the key
the device generated for this rotation. Anything else is refused and the working
certificate stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

#: A certificate message larger than this is refused unread (a leaf and a short chain).
MAX_CERTIFICATE_BYTES = 32 * 1024
#: Certificates in one message, leaf included.
MAX_CHAIN = 4
#: Clock skew tolerated on notBefore (a device's clock may lag the CA's).
CLOCK_SKEW = timedelta(minutes=5)


class CertificateRefused(ValueError):
    """The certificate must not be installed; the message says why (no secrets in it)."""


def load_expected_cas(pem: bytes) -> tuple[x509.Certificate, ...]:
    """The CA certificates a device accepts issuers from (a PEM bundle)."""
    cas = tuple(x509.load_pem_x509_certificates(pem))
    if not cas:
        raise ValueError("expected CA: no certificate in the bundle")
    return cas


def check_issued(
    pem: object,
    *,
    thing: str,
    expected_cas: Sequence[x509.Certificate],
    public_key_der: bytes,
    now: datetime,
) -> x509.Certificate:
    """The leaf certificate if it may be installed; raise :class:`CertificateRefused`."""
    chain = _parse(pem)
    leaf = chain[0]
    _check_names(leaf, thing)
    _check_validity(leaf, now, "certificate")
    if _is_ca(leaf):
        raise CertificateRefused("certificate: is a CA certificate; allowed: a device certificate")
    if _spki(leaf) != public_key_der:
        raise CertificateRefused(
            "certificate: its public key is not the key generated for this rotation"
        )
    _check_chain(leaf, chain[1:], expected_cas, now)
    return leaf


def _parse(pem: object) -> list[x509.Certificate]:
    if not isinstance(pem, str) or not pem.strip():
        raise CertificateRefused("certificatePem: missing or not a string; allowed: PEM")
    if len(pem) > MAX_CERTIFICATE_BYTES:
        raise CertificateRefused(
            f"certificatePem: {len(pem)} characters; allowed: at most {MAX_CERTIFICATE_BYTES}"
        )
    try:
        chain = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CertificateRefused("certificatePem: does not parse as PEM X.509") from None
    if len(chain) > MAX_CHAIN:
        raise CertificateRefused(
            f"certificatePem: {len(chain)} certificates; allowed: at most {MAX_CHAIN}"
        )
    return chain


def _check_names(leaf: x509.Certificate, thing: str) -> None:
    attributes = list(leaf.subject)
    common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attributes) != 1 or len(common_names) != 1 or common_names[0].value != thing:
        shown = leaf.subject.rfc4514_string()[:120]
        raise CertificateRefused(
            f"certificate: subject {shown!r}; allowed: exactly CN={thing} and nothing else"
        )
    try:
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return
    raise CertificateRefused("certificate: has a subjectAltName; allowed: no other names")


def _check_validity(certificate: x509.Certificate, now: datetime, what: str) -> None:
    if certificate.not_valid_before_utc > now + CLOCK_SKEW:
        raise CertificateRefused(f"{what}: not valid before {certificate.not_valid_before_utc}")
    if certificate.not_valid_after_utc <= now:
        raise CertificateRefused(f"{what}: expired {certificate.not_valid_after_utc}")


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.value.ca)


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    expected_cas: Sequence[x509.Certificate],
    now: datetime,
) -> None:
    """Walk issuer links from the leaf to one of ``expected_cas``; each step's signature checked."""
    certificate = leaf
    remaining = list(intermediates)
    for _ in range(MAX_CHAIN):
        if any(_issued_by(certificate, ca) for ca in expected_cas):
            return
        step = next((c for c in remaining if _is_ca(c) and _issued_by(certificate, c)), None)
        if step is None:
            break
        _check_validity(step, now, "intermediate CA")
        remaining.remove(step)
        certificate = step
    raise CertificateRefused(
        f"certificate: issuer {leaf.issuer.rfc4514_string()[:120]!r} does not chain to the "
        "expected CA; allowed: certificates issued by the configured CA"
    )
