"""Device certificates as a factory CA (not CA Service) makes them, for ``inventory enroll``,
with any subject (also hostile ones: ``_validate=False``) and any expiry."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FACTORY_KEY = ec.generate_private_key(ec.SECP256R1())
FACTORY = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "factory CA")])


def factory_certificate(
    *names: str, days: float = 40, ca: bool = False, key_pem: bool = False
) -> tuple[str, x509.Certificate]:
    """A device certificate from a factory CA (not CA Service), as provisioning made it."""
    now = datetime.now(UTC)
    # _validate=False: a hostile CN need not respect X.509's 64-character limit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, n, _validate=False) for n in names]
        )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(FACTORY)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(FACTORY_KEY, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    if key_pem:
        pem += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    return pem, certificate
