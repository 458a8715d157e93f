"""The shared CSR rules (core/csr_policy.py): one decision for every cloud's signer, and
the AWS signer Lambda refusing exactly as they say (status and reason)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from iot_remote_access.core.csr_policy import CsrRefusal, Verdict, rotation_verdict, screen_csr
from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.lambdas.cert_signer import handler as signer_handler
from tests.test_cert_handlers import LambdaContextStandIn, deployed  # noqa: F401 - fixture
from tests.test_cert_rotation_moto import Device

THING = "sensor-1"


def _csr(
    *names: str,
    key: Any = None,
    algorithm: hashes.HashAlgorithm | None = None,
    san: x509.SubjectAlternativeName | None = None,
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in names])
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    request = builder.sign(
        key or ec.generate_private_key(ec.SECP256R1()), algorithm or hashes.SHA256()
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def _rsa_csr_signed_with(oid_hex: str) -> str:
    """An RSA CSR whose signature algorithm claims ``oid_hex`` (same length as SHA-256's).

    cryptography no longer signs with MD5 or SHA-1, so the OID of a SHA-256 CSR is
    swapped, as a hostile device would send it (the signature no longer matters: the
    algorithm is refused before anything checks it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, THING)])
    )
    der = request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    sha256_rsa = bytes.fromhex("2a864886f70d01010b")  # 1.2.840.113549.1.1.11
    assert der.count(sha256_rsa) == 1
    body = base64.b64encode(der.replace(sha256_rsa, bytes.fromhex(oid_hex))).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


#: Every refusal the signer makes from the CSR alone: (CSR, status, reason pattern).
HOSTILE = {
    "unparseable": ("not a csr", 400, "csr: no PEM 'CERTIFICATE REQUEST' blocks"),
    "weak RSA key": (
        _csr(THING, key=rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        400,
        "csr: RSA key of 1024 bits",
    ),
    "RSA exponent 3": (
        _csr(THING, key=rsa.generate_private_key(public_exponent=3, key_size=2048)),
        400,
        "csr: RSA public exponent 3; allowed: odd, >= 65537",
    ),
    "SHA-1 signature": (
        _rsa_csr_signed_with("2a864886f70d010105"),  # sha1WithRSAEncryption
        400,
        "csr: signed with 1.2.840.113549.1.1.5; allowed: RSA",
    ),
    "MD5 signature": (
        _rsa_csr_signed_with("2a864886f70d010104"),  # md5WithRSAEncryption
        400,
        "csr: signed with 1.2.840.113549.1.1.4; allowed: RSA",
    ),
    "weak curve": (
        _csr(THING, key=ec.generate_private_key(ec.SECP256K1())),
        400,
        "csr: EC key on curve 1.3.132.0.10",
    ),
    "another thing's CN": (_csr("sensor-2"), 403, "csr: names 'sensor-2' but was sent by"),
    "a second CN": (_csr(THING, "sensor-2"), 403, "csr: names 'sensor-2'"),
    "another thing in a SAN": (
        _csr(THING, san=x509.SubjectAlternativeName([x509.DNSName("sensor-2")])),
        400,
        "csr: requests the extension subjectAltName",
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_screen_refuses_with_the_status_and_reason(case: str) -> None:
    pem, status, reason = HOSTILE[case]
    with pytest.raises(CsrRefusal) as refused:
        screen_csr(pem, THING)
    assert refused.value.status == status
    assert refused.value.reason.startswith(reason), refused.value.reason


def test_screen_accepts_the_own_name_or_no_name() -> None:
    assert screen_csr(_csr(THING), THING).common_names == (THING,)
    assert screen_csr(_csr(), THING).common_names == ()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert screen_csr(_csr(THING, key=rsa_key, algorithm=hashes.SHA384()), THING).key_size == 2048


@pytest.mark.parametrize(
    ("state", "on_record", "expected"),
    [
        (None, None, (404, "thing: 'sensor-1' is not in the certificate inventory")),
        (RotationState.IDLE, None, (409, "thing: 'sensor-1' has no rotation pending (state IDLE)")),
        (RotationState.SCHEDULED, None, (409, "has no rotation pending (state SCHEDULED)")),
        (RotationState.ISSUING, "same", (409, "csr: this CSR is already being signed")),
        (RotationState.ISSUED, "other", (409, "has no rotation pending (state ISSUED)")),
        (RotationState.ISSUED, "same", Verdict.DUPLICATE),
        (RotationState.REQUESTED, None, Verdict.ISSUE),
        (RotationState.REQUESTED, "other", Verdict.ISSUE),  # a new attempt, a new CSR
    ],
)
def test_the_inventory_state_decides_issue_duplicate_or_refusal(
    state: str | None, on_record: str | None, expected: object
) -> None:
    csr = screen_csr(_csr(THING), THING)
    fingerprint = {"same": csr.fingerprint, "other": "0" * 64, None: None}[on_record]
    if isinstance(expected, Verdict):
        assert (
            rotation_verdict(THING, csr, state=state, fingerprint_on_record=fingerprint) is expected
        )
        return
    with pytest.raises(CsrRefusal) as refused:
        rotation_verdict(THING, csr, state=state, fingerprint_on_record=fingerprint)
    status, reason = expected  # type: ignore[misc]
    assert refused.value.status == status and reason in refused.value.reason


@pytest.mark.parametrize("case", [*HOSTILE, "no rotation pending"])
def test_the_aws_signer_refuses_exactly_as_the_shared_rules_say(
    deployed: dict[str, Any],  # noqa: F811 - the fixture imported above
    case: str,
) -> None:
    """The signer Lambda, as Lambda runs it against moto: same status, same reason."""
    device: Device = deployed["device"]
    pem = _csr(THING) if case == "no rotation pending" else HOSTILE[case][0]
    with pytest.raises(CsrRefusal) as shared:
        csr = screen_csr(pem, THING)
        rotation_verdict(THING, csr, state=RotationState.IDLE, fingerprint_on_record=None)
    response = signer_handler.handler(device.csr_event(pem), LambdaContextStandIn())
    assert response["statusCode"] == shared.value.status
    assert json.loads(response["body"]) == {"status": "rejected", "reason": shared.value.reason}
