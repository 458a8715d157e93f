"""The signer's stdlib CSR checks, against real CSRs made with cryptography."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from iot_remote_access.core.csr import CsrError, inspect_csr


def make_csr(key: object, *names: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in names])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (ec.generate_private_key(ec.SECP256R1()), ("EC", 256, "P-256")),
        (ec.generate_private_key(ec.SECP384R1()), ("EC", 384, "P-384")),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), ("RSA", 2048, None)),
    ],
)
def test_allowed_keys_are_read(key: object, expected: tuple[str, int, str | None]) -> None:
    info = inspect_csr(make_csr(key, "sensor-1"))
    assert (info.key_type, info.key_size, info.curve) == expected
    assert info.common_names == ("sensor-1",)
    assert x509.load_pem_x509_csr(info.pem().encode()).is_signature_valid


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024),
            r"csr: RSA key of 1024 bits; allowed: RSA 2048\.\.4096 bits or EC P-256/P-384",
        ),
        (
            ec.generate_private_key(ec.SECP521R1()),
            r"csr: EC key on curve 1\.3\.132\.0\.35; allowed",
        ),
        (
            ec.generate_private_key(ec.SECP256K1()),
            r"csr: EC key on curve 1\.3\.132\.0\.10; allowed",
        ),
        (ed25519.Ed25519PrivateKey.generate(), r"csr: key algorithm 1\.3\.101\.112; allowed"),
    ],
)
def test_wrong_key_type_or_size_is_refused(key: object, message: str) -> None:
    with pytest.raises(CsrError, match=message):
        inspect_csr(make_csr(key, "sensor-1"))


def test_fingerprint_recognizes_the_same_csr() -> None:
    pem = make_csr(ec.generate_private_key(ec.SECP256R1()), "sensor-1")
    assert inspect_csr(pem).fingerprint == inspect_csr(pem.replace("\n", "\r\n")).fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "csr: missing or not a string"),
        ("", "csr: missing or not a string"),
        ("hello", "csr: no PEM 'CERTIFICATE REQUEST' blocks; allowed: exactly one"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
            r"csr: does not parse as PKCS#10",
        ),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nQUJ=D\n-----END CERTIFICATE REQUEST-----",
            "csr: the PEM body is not base64",
        ),
        ("x" * 20000, r"csr: 20000 characters; allowed: at most 16384"),
    ],
)
def test_unparseable_csr_is_refused(text: object, message: str) -> None:
    with pytest.raises(CsrError, match=message):
        inspect_csr(text)


def test_two_csrs_in_one_message_are_refused() -> None:
    pem = make_csr(ec.generate_private_key(ec.SECP256R1()), "a")
    with pytest.raises(CsrError, match="2 PEM 'CERTIFICATE REQUEST' blocks"):
        inspect_csr(pem + pem)


def test_truncated_and_corrupted_der_is_refused() -> None:
    pem = make_csr(ec.generate_private_key(ec.SECP256R1()), "a")
    der = base64.b64decode("".join(pem.splitlines()[1:-1]))
    for broken in (der[:-10], der[:40], b"\x31" + der[1:], der + b"\x00"):
        body = base64.b64encode(broken).decode()
        with pytest.raises(CsrError, match="csr: does not parse as PKCS#10"):
            inspect_csr(
                f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----"
            )


def test_certificate_facts_read_serial_and_not_after() -> None:
    from datetime import UTC, datetime

    from iot_remote_access.core.csr import certificate_facts

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    for not_after in (datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC), datetime(2051, 1, 2, tzinfo=UTC)):
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(0x00ABCDEF0123)
            .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
            .not_valid_after(not_after)  # 2051: GeneralizedTime, 2031: UTCTime
            .sign(key, hashes.SHA256())
        )
        facts = certificate_facts(certificate.public_bytes(serialization.Encoding.PEM).decode())
        assert facts.not_after == not_after
        assert facts.serial == "ab:cd:ef:01:23"
    with pytest.raises(ValueError, match="certificate: no PEM 'CERTIFICATE' block"):
        certificate_facts("nothing")
