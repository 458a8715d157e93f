"""PrivateCa: the ACM Private CA that signs device certificates (created or imported)."""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_acmpca as acmpca
from constructs import Construct

from iot_remote_access.constructs.aws import props

#: Monthly price of one ACM Private CA in general-purpose mode (us-east-1 list price),
#: plus a per-certificate charge; stated in docs/cost.md.
GENERAL_PURPOSE_MONTHLY_USD = 400
#: What every ``acmpca.ICertificateAuthority`` has (a ``PrivateCa`` too).
I_CERTIFICATE_AUTHORITY = props.Interface(
    "acmpca.ICertificateAuthority", "certificate_authority_arn"
)
_CA_ARN = re.compile(r"^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:\d{12}:certificate-authority/[0-9a-f-]+$")


def check_ca_arn(field: str, arn: str) -> None:
    """``ValueError`` naming ``field`` unless ``arn`` is an ACM Private CA ARN (or a token)."""
    if not cdk.Token.is_unresolved(arn) and not _CA_ARN.match(arn):
        shown = arn if len(arn) <= 60 else f"{arn[:57]}..."
        raise ValueError(
            f"{field}: {shown!r} is not an ACM Private CA ARN; "
            "allowed: arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/UUID"
        )


class PrivateCa(Construct):
    """A root ACM Private CA in general-purpose mode, activated, with OCSP.

    General-purpose, not short-lived-certificate mode: device certificates here
    live a year or more, and short-lived mode only issues certificates valid up to
    seven days. OCSP (not a CRL) because it needs no public S3 bucket.

    :param existing_ca_arn: use this CA instead of creating one (or
        :meth:`from_certificate_authority_arn`). Default: create.
    :param common_name: Default: "iot-remote-access device CA".
    :param validity_years: validity of the created CA's own certificate. Default: 10.

    Example::

        from iot_remote_access.constructs.aws import PrivateCa

        ca = PrivateCa(stack, "Ca", common_name="Example device CA", validity_years=5)
        ca.ca_arn  # also ca.certificate_authority_arn, as acmpca.ICertificateAuthority has
        existing = PrivateCa.from_certificate_authority_arn(
            stack,
            "Existing",
            "arn:aws:acm-pca:eu-central-1:123456789012:certificate-authority/"
            "0b9f0a9e-1111-2222-3333-444455556666",
        )  # an acmpca.ICertificateAuthority: CertificateRotation(certificate_authority=...)

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        existing_ca_arn: str | None = None,
        common_name: str = "iot-remote-access device CA",
        validity_years: int = 10,
    ) -> None:
        props.check(
            "PrivateCa",
            existing_ca_arn=(existing_ca_arn, props.optional(str)),
            common_name=(common_name, str),
            validity_years=(validity_years, int),
        )
        super().__init__(scope, construct_id)
        self.authority: acmpca.CfnCertificateAuthority | None = None
        if existing_ca_arn is not None:
            check_ca_arn("existing_ca_arn", existing_ca_arn)
            self.ca_arn = self.certificate_authority_arn = existing_ca_arn
            return
        if not 1 <= validity_years <= 30:
            raise ValueError(f"validity_years: {validity_years!r}; allowed: 1..30")
        self.authority = acmpca.CfnCertificateAuthority(
            self,
            "Authority",
            type="ROOT",
            key_algorithm="EC_prime256v1",
            signing_algorithm="SHA256WITHECDSA",
            subject=acmpca.CfnCertificateAuthority.SubjectProperty(common_name=common_name),
            usage_mode="GENERAL_PURPOSE",
            revocation_configuration=acmpca.CfnCertificateAuthority.RevocationConfigurationProperty(
                ocsp_configuration=acmpca.CfnCertificateAuthority.OcspConfigurationProperty(
                    enabled=True
                )
            ),
        )
        # Deleting a CA would strand every certificate it issued: keep it on stack deletion.
        self.authority.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        root = acmpca.CfnCertificate(
            self,
            "RootCertificate",
            certificate_authority_arn=self.authority.attr_arn,
            certificate_signing_request=self.authority.attr_certificate_signing_request,
            signing_algorithm="SHA256WITHECDSA",
            template_arn="arn:aws:acm-pca:::template/RootCACertificate/V1",
            validity=acmpca.CfnCertificate.ValidityProperty(type="YEARS", value=validity_years),
        )
        self.activation = acmpca.CfnCertificateAuthorityActivation(
            self,
            "Activation",
            certificate_authority_arn=self.authority.attr_arn,
            certificate=root.attr_certificate,
            status="ACTIVE",
        )
        self.ca_arn = self.certificate_authority_arn = self.authority.attr_arn

    @classmethod
    def from_certificate_authority_arn(
        cls, scope: Construct, construct_id: str, certificate_authority_arn: str
    ) -> acmpca.ICertificateAuthority:
        """An existing private CA of your account, by ARN (nothing is created).

        aws-cdk-lib's ``CertificateAuthority.from_certificate_authority_arn``, with
        the ARN checked first: a wrong type is a ``TypeError``, anything but an ACM
        Private CA ARN (or a token) a ``ValueError`` naming the parameter.
        """
        props.check(
            "PrivateCa.from_certificate_authority_arn",
            certificate_authority_arn=(certificate_authority_arn, str),
        )
        check_ca_arn("certificate_authority_arn", certificate_authority_arn)
        return acmpca.CertificateAuthority.from_certificate_authority_arn(
            scope, construct_id, certificate_authority_arn
        )
