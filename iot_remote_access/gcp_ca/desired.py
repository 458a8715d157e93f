"""The CA pool and root CA of ``gcp.certificateAuthority``, as CA Service SDK messages.

The pool's issuance policy is the service-side half of what the issuer asks for, so a
request that slipped past the issuer would still get nothing more:

- config-based issuance only: the subject is the one the issuer sets (CN = the thing
  name), never a CSR's (CA Service copies a CSR's subject as it is);
- subject passthrough on, SAN passthrough off: requested SANs are discarded;
- no extension passes through; the baseline adds exactly what a device needs:
  keyUsage digitalSignature, extendedKeyUsage clientAuth, basicConstraints CA:FALSE;
- key types: the ones ``core/csr.py`` accepts (RSA 2048..4096, EC P-256/P-384);
- maximum lifetime: the longest staggered validity (or the setting, never shorter).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from google.cloud.security.privateca_v1 import types as ca

from iot_remote_access.core.csr import EC_CURVES, MAX_RSA_BITS, MIN_RSA_BITS
from iot_remote_access.core.gcp_ca_rules import pool_name
from iot_remote_access.core.stagger import StaggerPolicy
from iot_remote_access.settings.gcp import GcpSettings

_Policy = ca.CaPool.IssuancePolicy
_EcKey = _Policy.AllowedKeyType.EcKeyType
_EC_ALGORITHMS = {
    "P-256": _EcKey.EcSignatureAlgorithm.ECDSA_P256,
    "P-384": _EcKey.EcSignatureAlgorithm.ECDSA_P384,
}


@dataclass(frozen=True)
class CaServiceState:
    """What ``gcp deploy`` makes live: one pool, one root CA in it."""

    pool_name: str
    pool: ca.CaPool
    authority_id: str
    authority: ca.CertificateAuthority
    #: Granted ``ISSUER_ROLE`` on the pool (added to whatever else its policy holds).
    issuer_members: tuple[str, ...] = ()

    @property
    def parent(self) -> str:
        return self.pool_name.rsplit("/caPools/", 1)[0]

    @property
    def pool_id(self) -> str:
        return self.pool_name.rsplit("/", 1)[1]

    @property
    def authority_name(self) -> str:
        return f"{self.pool_name}/certificateAuthorities/{self.authority_id}"


def device_x509_values() -> ca.X509Parameters:
    """The only key usages a device's client certificate needs, and never a CA."""
    return ca.X509Parameters(
        key_usage=ca.KeyUsage(
            base_key_usage=ca.KeyUsage.KeyUsageOptions(digital_signature=True),
            extended_key_usage=ca.KeyUsage.ExtendedKeyUsageOptions(client_auth=True),
        ),
        ca_options=ca.X509Parameters.CaOptions(is_ca=False),
    )


def issuance_policy(maximum_lifetime_days: int) -> ca.CaPool.IssuancePolicy:
    key_types = [
        _Policy.AllowedKeyType(
            rsa=_Policy.AllowedKeyType.RsaKeyType(
                min_modulus_size=MIN_RSA_BITS, max_modulus_size=MAX_RSA_BITS
            )
        ),
        *(
            _Policy.AllowedKeyType(elliptic_curve=_EcKey(signature_algorithm=_EC_ALGORITHMS[curve]))
            for curve in EC_CURVES.values()
        ),
    ]
    return _Policy(
        allowed_key_types=key_types,
        maximum_lifetime=timedelta(days=maximum_lifetime_days),
        allowed_issuance_modes=_Policy.IssuanceModes(
            allow_csr_based_issuance=False, allow_config_based_issuance=True
        ),
        baseline_values=device_x509_values(),
        identity_constraints=ca.CertificateIdentityConstraints(
            allow_subject_passthrough=True, allow_subject_alt_names_passthrough=False
        ),
        # Present and empty: no requested extension passes (the baseline's still apply).
        passthrough_extensions=ca.CertificateExtensionConstraints(),
    )


def desired_state(project: str, settings: GcpSettings, stagger: StaggerPolicy) -> CaServiceState:
    """The pool and CA for ``project`` (``settings.certificate_authority`` must be set)."""
    authority = settings.certificate_authority
    assert authority is not None
    longest = stagger.base_days + stagger.window_days - 1
    pool = ca.CaPool(
        tier=ca.CaPool.Tier.ENTERPRISE,
        issuance_policy=issuance_policy(authority.certificate_lifetime_days(longest)),
        # Revocation only protects anyone once the CRL is published.
        publishing_options=ca.CaPool.PublishingOptions(
            publish_ca_cert=True,
            publish_crl=True,
            encoding_format=ca.CaPool.PublishingOptions.EncodingFormat.PEM,
        ),
        labels=dict(settings.labels),
    )
    root = ca.CertificateAuthority(
        type_=ca.CertificateAuthority.Type.SELF_SIGNED,
        key_spec=ca.CertificateAuthority.KeyVersionSpec(
            algorithm=getattr(ca.CertificateAuthority.SignHashAlgorithm, authority.key_algorithm)
        ),
        lifetime=timedelta(days=authority.ca_lifetime_days),
        config=ca.CertificateConfig(
            subject_config=ca.CertificateConfig.SubjectConfig(
                subject=ca.Subject(
                    common_name=authority.ca_common_name, organization=authority.ca_organization
                )
            ),
            x509_config=ca.X509Parameters(
                key_usage=ca.KeyUsage(
                    base_key_usage=ca.KeyUsage.KeyUsageOptions(cert_sign=True, crl_sign=True)
                ),
                # Devices only: this CA never signs another CA.
                ca_options=ca.X509Parameters.CaOptions(is_ca=True, max_issuer_path_length=0),
            ),
        ),
        labels=dict(settings.labels),
    )
    return CaServiceState(
        pool_name=pool_name(project, authority.location, authority.pool),
        pool=pool,
        authority_id=authority.ca_id,
        authority=root,
        issuer_members=authority.issuer_members,
    )
