"""CaServiceIssuer against the CA Service STAND-IN (tests/support/ca_service_standin.py).

The pool and CA are deployed first with the real plan/deploy, so every issuance goes
through the issuance policy ``gcp deploy`` sets; the real SDK client sends the requests
over gRPC and the stand-in signs real X.509 certificates with ``cryptography``.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.api_core import exceptions as gexc
from google.cloud.security.privateca_v1 import types as ca

from iot_remote_access.core.certificate_issuer import (
    CertificateIssuer,
    IssuerRefused,
    IssuerThrottled,
)
from iot_remote_access.core.stagger import MemoryLedger, StaggerPolicy, issuance_placement
from iot_remote_access.gcp_ca.clients import make_client
from iot_remote_access.gcp_ca.issuer import CaServiceIssuer
from iot_remote_access.settings import FleetSettings
from tests.support.ca_service_standin import CaServiceStandIn, ready_issuer

PROJECT = "my-fleet-project"
POOL = f"projects/{PROJECT}/locations/europe-west1/caPools/iot-devices"


def fleet(**certificates: Any) -> FleetSettings:
    raw: dict[str, Any] = {
        "gcp": {
            "projectId": PROJECT,
            "projectNumber": "123456789012",
            "bridge": {"serviceAccount": f"iot-bridge@{PROJECT}.iam.gserviceaccount.com"},
            "certificateAuthority": {"location": "europe-west1"},
        }
    }
    if certificates:
        raw["certificates"] = certificates
    return FleetSettings.parse(raw)


def deployed(standin: CaServiceStandIn, settings: FleetSettings) -> CaServiceIssuer:
    issuer: CaServiceIssuer = ready_issuer(standin, settings, PROJECT)
    return issuer


@pytest.fixture
def issuer(ca_service: CaServiceStandIn) -> CaServiceIssuer:
    return deployed(ca_service, fleet())


def csr(
    key: Any = None, common_name: str | None = None, sans: tuple[str, ...] = ()
) -> tuple[str, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if sans:
        names_ = [x509.DNSName(name) for name in sans]
        builder = builder.add_extension(x509.SubjectAlternativeName(names_), critical=False)
    request = builder.sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode(), key


def leaf(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def direct_config(
    common_name: str, key: Any = None, sans: tuple[str, ...] = (), **x509: Any
) -> ca.CertificateConfig:
    """A config-based request as anyone with create rights could send it, bypassing the
    issuer (to see what the pool's own policy does)."""
    public = (key or ec.generate_private_key(ec.SECP256R1())).public_key()
    return ca.CertificateConfig(
        subject_config=ca.CertificateConfig.SubjectConfig(
            subject=ca.Subject(common_name=common_name),
            subject_alt_name=ca.SubjectAltNames(dns_names=list(sans)),
        ),
        x509_config=ca.X509Parameters(**x509),
        public_key=ca.PublicKey(
            key=public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            format_=ca.PublicKey.KeyFormat.PEM,
        ),
    )


def issued_count(standin: CaServiceStandIn) -> int:
    return sum(name == "CreateCertificate" for name in standin.methods_called())


def test_the_subject_is_the_thing_name_whatever_the_csr_says(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    protocol: CertificateIssuer = issuer  # the shared interface, checked by mypy
    for common_name in (None, "sensor-7"):
        pem, key = csr(common_name=common_name)
        got = protocol.issue("sensor-7", pem, timedelta(days=365), f"r-{common_name}")
        certificate = leaf(got.pem)
        assert certificate.subject.rfc4514_string() == "CN=sensor-7"
        assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
        assert got.serial_hex == format(certificate.serial_number, "x")
        assert got.name.startswith(f"{POOL}/certificates/sensor-7-")
        chain_root = leaf(got.chain_pem[0])
        assert certificate.issuer == chain_root.subject
        chain_root.public_key().verify(  # signed by the pool's CA, really
            certificate.signature,
            certificate.tbs_certificate_bytes,
            ec.ECDSA(certificate.signature_hash_algorithm),
        )
    sent = next(r for name, r in ca_service.requests if name == "CreateCertificate")
    assert sent.certificate.config.subject_config.subject.common_name == "sensor-7"
    assert sent.certificate.pem_csr == ""  # config-based: the CSR's subject is never sent


def test_only_the_key_usages_a_device_needs(issuer: CaServiceIssuer) -> None:
    got = issuer.issue("sensor-1", csr()[0], timedelta(days=365), "r1")
    extensions = leaf(got.pem).extensions
    usage = extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.key_encipherment
    purposes = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    with pytest.raises(x509.ExtensionNotFound):
        extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_the_pool_itself_drops_sans_and_overrides_ca_and_server_usages(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    """A request that bypassed the issuer still gets a device certificate only: the
    issuance policy ``gcp deploy`` sets discards SANs and overwrites the key usages."""
    greedy = direct_config(
        "sensor-2",
        sans=("broker.example.com",),
        key_usage=ca.KeyUsage(
            base_key_usage=ca.KeyUsage.KeyUsageOptions(cert_sign=True),
            extended_key_usage=ca.KeyUsage.ExtendedKeyUsageOptions(server_auth=True),
        ),
        ca_options=ca.X509Parameters.CaOptions(is_ca=True),
    )
    got = make_client(ca_service.host).create_certificate(
        parent=POOL,
        certificate_id="greedy-1",
        certificate=ca.Certificate(config=greedy, lifetime=timedelta(days=30)),
    )
    extensions = leaf(got.pem_certificate).extensions
    with pytest.raises(x509.ExtensionNotFound):
        extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert not extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    # and CSR passthrough, which would copy a CSR's subject, is closed on this pool
    with pytest.raises(gexc.FailedPrecondition, match="CSR-based issuance is not allowed"):
        make_client(ca_service.host).create_certificate(
            parent=POOL,
            certificate_id="csr-1",
            certificate=ca.Certificate(pem_csr=csr()[0], lifetime=timedelta(days=30)),
        )


def test_the_pool_cuts_a_longer_lifetime_to_its_maximum(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    """What the issuer never lets happen (it refuses first): CA Service's own cut."""
    config = direct_config("s")
    got = make_client(ca_service.host).create_certificate(
        parent=POOL,
        certificate_id="long-1",
        certificate=ca.Certificate(config=config, lifetime=timedelta(days=1000)),
    )
    assert got.lifetime == timedelta(days=454)
    certificate = leaf(got.pem_certificate)
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == timedelta(days=454)


@pytest.mark.parametrize(
    ("request_csr", "match"),
    [
        (lambda: csr(common_name="sensor-8")[0], "names 'sensor-8' but was sent by 'sensor-1'"),
        (lambda: csr(sans=("evil.example.com",))[0], "subjectAltName"),
        (lambda: csr(key=rsa.generate_private_key(65537, 1024))[0], "1024"),
        (lambda: "not a csr", "PEM"),
    ],
    ids=["another-things-cn", "san", "weak-key", "garbage"],
)
def test_refused_by_the_shared_csr_rules_before_any_call(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn, request_csr: Any, match: str
) -> None:
    with pytest.raises(IssuerRefused, match=match):
        issuer.issue("sensor-1", request_csr(), timedelta(days=365), "r1")
    assert issued_count(ca_service) == 0


def test_a_csr_whose_signature_does_not_verify_is_refused(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    """Config-based issuance skips CA Service's own proof-of-possession check: ours stands."""
    pem, _ = csr()
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature: still a CSR, no longer a proof
    forged = x509.load_der_x509_csr(bytes(der))
    forged_pem = forged.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(IssuerRefused, match="signature does not verify"):
        issuer.issue("sensor-1", forged_pem, timedelta(days=365), "r1")
    assert issued_count(ca_service) == 0


def test_rsa_keys_within_the_pools_bounds_are_issued_others_refused_by_the_pool(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    got = issuer.issue(
        "sensor-1", csr(key=rsa.generate_private_key(65537, 2048))[0], timedelta(days=365), "r1"
    )
    assert leaf(got.pem).public_key().key_size == 2048
    # A P-521 key: not among the pool's allowed key types (the issuer's rules refuse it too).
    config = direct_config("x", key=ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(gexc.InvalidArgument, match="key's type is not allowed"):
        make_client(ca_service.host).create_certificate(
            parent=POOL,
            certificate_id="p521",
            certificate=ca.Certificate(config=config, lifetime=timedelta(days=30)),
        )
    with pytest.raises(IssuerRefused, match=r"EC key on curve 1\.3\.132\.0\.35; allowed: RSA"):
        issuer.issue(
            "sensor-1",
            csr(key=ec.generate_private_key(ec.SECP521R1()))[0],
            timedelta(days=365),
            "r2",
        )


def test_a_thing_name_longer_than_a_common_name_is_refused(issuer: CaServiceIssuer) -> None:
    with pytest.raises(IssuerRefused, match=r"thing: .* allowed: 1\.\.64"):
        issuer.issue("t" * 65, csr()[0], timedelta(days=365), "r1")


def test_lifetimes_come_from_the_stagger_and_meet_its_bound(
    ca_service: CaServiceStandIn,
) -> None:
    """Thirty devices issued the same day spread over a 7-day window exactly as on AWS:
    the busiest expiry day holds ceil(N/W), within the issue's bound ceil(1.1 N/W)."""
    settings = fleet(baseValidityDays=40, staggerWindowDays=7, leadTimeDays=30)
    issuer = deployed(ca_service, settings)
    ca_service.create_certificate_qps = 1000
    policy, ledger = settings.stagger_policy(), MemoryLedger(window_days=7)
    now = datetime.now(UTC)
    days = Counter()
    for n in range(30):
        thing = f"sensor-{n}"
        placement = issuance_placement(policy, ledger, thing, now)
        got = issuer.issue(thing, csr()[0], placement.lifetime, f"req-{n}")
        certificate = leaf(got.pem)
        validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        assert validity == placement.lifetime  # not cut by the pool's maximum
        assert got.not_after == certificate.not_valid_after_utc
        days[validity.days] += 1
    assert sorted(days) == list(range(40, 47))
    assert max(days.values()) == math.ceil(30 / 7) <= math.ceil(1.1 * 30 / 7)
    longest = policy.base_days + policy.window_days - 1
    assert issuer.maximum_lifetime == timedelta(days=longest)


def test_a_retried_issuance_reuses_its_recorded_place() -> None:
    """The AWS signer's rule, now shared: the place recorded for today's cohort is reused
    (no second claim); a retry on another day claims anew."""
    policy, ledger = StaggerPolicy(), MemoryLedger()
    now = datetime(2026, 12, 2, 10, tzinfo=UTC)
    first = issuance_placement(policy, ledger, "sensor-1", now)
    retry = issuance_placement(policy, ledger, "sensor-1", now, (first.cohort, first.offset))
    assert first.fresh and not retry.fresh
    assert retry.lifetime == first.lifetime == timedelta(days=365 + first.offset)
    assert ledger.joined(first.cohort) == 1 and sum(ledger.loads(first.cohort)) == 1
    later = issuance_placement(
        policy, ledger, "sensor-1", now + timedelta(days=1), (first.cohort, first.offset)
    )
    assert later.fresh and later.cohort == "2026-12-03"


def test_a_lifetime_above_the_pool_maximum_is_refused_not_cut(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    assert issuer.maximum_lifetime == timedelta(days=StaggerPolicy().base_days + 89)
    with pytest.raises(IssuerRefused, match=r"lifetime: 455 days .* allowed: 1\.\.454 days"):
        issuer.issue("sensor-1", csr()[0], timedelta(days=455), "r1")
    assert issued_count(ca_service) == 0


def test_the_same_request_id_returns_the_same_certificate(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    pem, _ = csr()
    first = issuer.issue("sensor-1", pem, timedelta(days=365), "rotation-1")
    again = issuer.issue("sensor-1", pem, timedelta(days=365), "rotation-1")
    assert again == first
    sent = [r for name, r in ca_service.requests if name == "CreateCertificate"]
    assert sent[0].request_id == sent[1].request_id != ""
    assert sent[0].certificate_id == sent[1].certificate_id
    # Past the service's 60 minutes of request-id memory: the certificate id still holds.
    ca_service.clock = lambda: datetime.now(UTC).timestamp() + 2 * 3600
    late = issuer.issue("sensor-1", pem, timedelta(days=365), "rotation-1")
    assert late == first
    assert ca_service.methods_called()[-2:] == ["CreateCertificate", "GetCertificate"]
    other = issuer.issue("sensor-1", pem, timedelta(days=365), "rotation-2")
    assert other.name != first.name
    assert len(ca_service.certificates) == 2


def test_throttling_is_issuer_throttled_and_a_retry_later_succeeds(
    ca_service: CaServiceStandIn,
) -> None:
    issuer = deployed(ca_service, fleet())
    ca_service.create_certificate_qps = 2
    moment = [1_900_000_000.0]
    ca_service.clock = lambda: moment[0]
    for n in range(2):
        issuer.issue(f"sensor-{n}", csr()[0], timedelta(days=365), f"r{n}")
    pem, _ = csr()
    with pytest.raises(IssuerThrottled, match="RESOURCE_EXHAUSTED"):
        issuer.issue("sensor-2", pem, timedelta(days=365), "r2")
    assert len(ca_service.certificates) == 2  # nothing issued for the throttled call
    moment[0] += 1.0
    got = issuer.issue("sensor-2", pem, timedelta(days=365), "r2")
    assert leaf(got.pem).subject.rfc4514_string() == "CN=sensor-2"


def test_revoking_twice_is_not_an_error(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    got = issuer.issue("sensor-1", csr()[0], timedelta(days=365), "r1")
    issuer.revoke(got.name)
    issuer.revoke(got.name)
    details = ca_service.certificates[got.name].revocation_details
    assert details.revocation_state == ca.RevocationReason.SUPERSEDED
    assert ca_service.methods_called()[-3:] == [
        "RevokeCertificate",
        "RevokeCertificate",
        "GetCertificate",
    ]
    with pytest.raises(IssuerRefused, match="NOT_FOUND"):
        issuer.revoke(f"{POOL}/certificates/unknown")


def test_an_enrolled_factory_certificate_is_not_revoked_at_ca_service(
    issuer: CaServiceIssuer, ca_service: CaServiceStandIn
) -> None:
    """What `inventory enroll` records for a certificate that did not come from the pool
    (pubsub/enrollment.py): refused without a call, so the rotation records it not-revoked."""
    before = len(ca_service.methods_called())
    for name in ("x509-sha256:" + "ab" * 32, "projects/other/locations/l/caPools/p/certificates/c"):
        with pytest.raises(IssuerRefused, match="nothing to revoke at CA Service"):
            issuer.revoke(name)
    assert len(ca_service.methods_called()) == before
