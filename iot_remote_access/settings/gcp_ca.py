"""The ``gcp.certificateAuthority`` settings: the CA Service pool and CA devices are issued from.

``gcp plan|deploy`` render them into a CA pool with an issuance policy and one root CA
(:mod:`iot_remote_access.gcp_ca.desired`); the rotation service issues through
:class:`iot_remote_access.gcp_ca.issuer.CaServiceIssuer` with the same names.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from iot_remote_access.core.gcp_ca_rules import (
    validate_iam_member,
    validate_location,
    validate_resource_id,
)
from iot_remote_access.core.stagger import MAX_VALIDITY_DAYS
from iot_remote_access.settings.base import SettingsSection, core_check

#: CA key algorithms CA Service creates (``CertificateAuthority.SignHashAlgorithm``).
KEY_ALGORITHMS = (
    "EC_P256_SHA256",
    "EC_P384_SHA384",
    "RSA_PKCS1_2048_SHA256",
    "RSA_PKCS1_3072_SHA256",
    "RSA_PKCS1_4096_SHA256",
    "RSA_PSS_2048_SHA256",
    "RSA_PSS_3072_SHA256",
    "RSA_PSS_4096_SHA256",
)
#: CA Service's own ceiling for a CA certificate's lifetime is far above this; 30 years
#: keeps a typo (3650 -> 36500) from creating a CA nobody can ever replace by plan.
MAX_CA_LIFETIME_DAYS = 30 * 365


class GcpCertificateAuthoritySettings(SettingsSection):
    """A CA pool (Enterprise tier) with one self-signed root CA, for device certificates.

    Default: pool ``iot-devices``, CA ``iot-devices-root-1`` (EC P-256, 10 years, CN
    ``iot-remote-access device CA``); certificates at most
    ``certificates.baseValidityDays + staggerWindowDays - 1`` days (455 by default),
    CRL and CA certificate published. ``location`` is required.
    """

    #: The region the pool and CA live in (CA Service has no global location).
    location: str
    #: ``ENTERPRISE`` only: the DevOps tier keeps no certificates, so it cannot revoke the
    #: superseded certificate a rotation ends with (see docs/gcp-rotation.md).
    tier: Literal["ENTERPRISE"] = "ENTERPRISE"
    pool: str = "iot-devices"
    ca_id: str = "iot-devices-root-1"
    ca_common_name: str = Field(default="iot-remote-access device CA", min_length=1, max_length=64)
    ca_organization: str = Field(default="iot-remote-access", min_length=1, max_length=64)
    ca_lifetime_days: int = Field(default=3650, ge=365, le=MAX_CA_LIFETIME_DAYS)
    key_algorithm: str = "EC_P256_SHA256"
    #: IAM members granted ``roles/privateca.certificateManager`` on the pool: create and
    #: revoke certificates (the rotation service's service account). Default: none.
    issuer_members: tuple[str, ...] = ()
    #: The pool's maximum certificate lifetime. Default: the longest staggered validity.
    maximum_certificate_lifetime_days: int | None = Field(default=None, ge=1, le=MAX_VALIDITY_DAYS)

    @field_validator("tier", mode="before")
    @classmethod
    def _tier_first(cls, value: object) -> object:
        # A clear word on DevOps before pydantic's generic "Input should be 'ENTERPRISE'".
        # (A field validator: a model-level "before" validator would validate JSON lists
        # as Python values, and strict mode refuses a list for a tuple there.)
        if value == "DEVOPS":
            raise ValueError(
                "'DEVOPS' is not allowed (that tier keeps no certificates and cannot "
                "revoke one, which every rotation ends with); allowed: 'ENTERPRISE'"
            )
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        return core_check(validate_location, value)

    @field_validator("pool", "ca_id")
    @classmethod
    def _ids(cls, value: str) -> str:
        return core_check(validate_resource_id, value)

    @field_validator("issuer_members")
    @classmethod
    def _members(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for member in value:
            core_check(validate_iam_member, member)
        return value

    @field_validator("key_algorithm")
    @classmethod
    def _key_algorithm(cls, value: str) -> str:
        if value not in KEY_ALGORITHMS:
            raise ValueError(
                f"{value[:40]!r} is not a CA Service key algorithm; allowed: "
                f"{', '.join(KEY_ALGORITHMS)}"
            )
        return value

    @model_validator(mode="after")
    def _ca_outlives_certificates(self) -> Self:
        longest = self.maximum_certificate_lifetime_days
        if longest is not None and self.ca_lifetime_days <= longest:
            raise ValueError(
                f"caLifetimeDays: {self.ca_lifetime_days} is not above "
                f"maximumCertificateLifetimeDays {longest}; allowed: a CA that outlives its "
                "certificates (CA Service cuts a certificate off at the CA's expiry)"
            )
        return self

    def certificate_lifetime_days(self, longest_staggered: int) -> int:
        """The pool's maximum lifetime: the setting, or the longest staggered validity."""
        chosen = self.maximum_certificate_lifetime_days
        return longest_staggered if chosen is None else chosen
