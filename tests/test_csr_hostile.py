"""Hostile CSRs (issue 14, defects 1 and 2): bounded time, and nothing that names anything.

Real CSRs made with ``cryptography``; the hand-made DER below is built with the
same encoder rules (``_der``) so each case differs from a valid CSR in one place.
"""

from __future__ import annotations

import base64
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from iot_remote_access.core.csr import MAX_CSR_BYTES, CsrError, inspect_csr

#: Generous: the machine is shared; the defect took 0.33 s at 1,000 characters and
#: about 20 minutes at the allowed 16,384.
TIME_BOUND_SECONDS = 0.5

BEGIN = "-----BEGIN CERTIFICATE REQUEST-----"
END = "-----END CERTIFICATE REQUEST-----"


def _timed(text: str) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        inspect_csr(text)
    except CsrError as error:
        message = str(error)
    else:  # pragma: no cover - every input here is refused
        message = "accepted"
    return time.perf_counter() - started, message


@pytest.mark.parametrize(
    "filler",
    [" ", "\n", "\t", " \n", "A", "A ", "=", "A\n", "-", "-----END CERTIFICATE REQUEST----"],
)
def test_a_csr_of_whitespace_or_partial_armour_is_refused_in_linear_time(filler: str) -> None:
    """The body the issue measured (whitespace only) and its neighbours, up to the allowed
    size. Sizes double, so a super-linear parser fails at a small size, not after minutes."""
    size = 1024
    while True:
        room = size - len(BEGIN) - len(END)
        bodies = [
            BEGIN + (filler * room)[:room] + END,  # armour around the filler
            BEGIN + (filler * room)[: room + len(END)],  # no END line
            (BEGIN + filler * 3) * (size // (len(BEGIN) + 3 * len(filler))),  # many BEGINs
        ]
        for text in bodies:
            elapsed, message = _timed(text[:size])
            assert elapsed < TIME_BOUND_SECONDS, (filler, size, elapsed)
            assert message.startswith("csr: "), message
        if size == MAX_CSR_BYTES:
            return
        size = min(2 * size, MAX_CSR_BYTES)


def _csr(builder: x509.CertificateSigningRequestBuilder) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-1")])
    request = builder.subject_name(name).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


SAN_CASES = {
    "dns name of another thing": x509.SubjectAlternativeName([x509.DNSName("sensor-2")]),
    "uri": x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:thing:sensor-2")]),
    "directory name": x509.SubjectAlternativeName(
        [x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-2")]))]
    ),
    "email": x509.SubjectAlternativeName([x509.RFC822Name("admin@example.com")]),
    "the sender's own name": x509.SubjectAlternativeName([x509.DNSName("sensor-1")]),
}


@pytest.mark.parametrize("san", SAN_CASES.values(), ids=SAN_CASES.keys())
def test_any_subject_alternative_name_is_refused(san: x509.SubjectAlternativeName) -> None:
    pem = _csr(x509.CertificateSigningRequestBuilder().add_extension(san, critical=False))
    with pytest.raises(CsrError, match=r"^csr: requests the extension subjectAltName; allowed: "):
        inspect_csr(pem)


@pytest.mark.parametrize(
    ("extension", "critical", "message"),
    [
        (
            x509.IssuerAlternativeName([x509.DNSName("ca.example.com")]),
            False,
            "requests the extension issuerAltName",
        ),
        (
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None
            ),
            True,
            "requests the extension nameConstraints",
        ),
        (
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            False,
            r"requests the extension 1\.3\.6\.1\.4\.1\.99999\.1",
        ),
        (
            x509.BasicConstraints(ca=True, path_length=None),
            True,
            r"asks to be a CA \(basicConstraints cA\)",
        ),
    ],
)
def test_extensions_beyond_what_a_device_needs_are_refused(
    extension: x509.ExtensionType, critical: bool, message: str
) -> None:
    pem = _csr(x509.CertificateSigningRequestBuilder().add_extension(extension, critical=critical))
    with pytest.raises(CsrError, match=message):
        inspect_csr(pem)


def test_the_extensions_a_device_needs_are_accepted() -> None:
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateSigningRequestBuilder()
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, b"device-secret")
    )
    assert inspect_csr(_csr(builder)).common_names == ("sensor-1",)


def test_an_attribute_that_carries_extensions_another_way_is_refused() -> None:
    """Microsoft's msCertExtensions attribute is read as extensions by some CAs."""
    builder = x509.CertificateSigningRequestBuilder().add_attribute(
        ObjectIdentifier("1.3.6.1.4.1.311.2.1.14"), b"sensor-2"
    )
    with pytest.raises(CsrError, match=r"requests the attribute 1\.3\.6\.1\.4\.1\.311\.2\.1\.14"):
        inspect_csr(_csr(builder))


def _der(tag: int, content: bytes) -> bytes:
    """One DER element (definite length, long form when needed)."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def test_a_huge_oid_arc_is_refused_quickly() -> None:
    """~12 KiB of OID continuation bytes in the subject: refused, not turned into a
    12 KiB integer (printing that takes quadratic time)."""
    oid = _der(0x06, b"\x2a" + b"\xff" * 11_900 + b"\x01")
    subject = _der(0x30, _der(0x31, _der(0x30, oid + _der(0x0C, b"x"))))
    info = _der(0x30, _der(0x02, b"\x00") + subject + _der(0x30, b""))
    der = _der(0x30, info + _der(0x30, b"") + _der(0x03, b"\x00"))
    text = f"{BEGIN}\n{base64.b64encode(der).decode()}\n{END}"
    assert len(text) <= MAX_CSR_BYTES
    elapsed, message = _timed(text)
    assert elapsed < TIME_BOUND_SECONDS
    assert message == "csr: does not parse as PKCS#10 (OID arc too large)", message
