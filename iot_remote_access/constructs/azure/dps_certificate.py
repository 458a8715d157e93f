"""DpsCertificate: the fleet CA registered with a DPS and verified by proof of possession."""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from cryptography import x509

from iot_remote_access.arm.clients import read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.errors import ArmInputError, ArmOperationError
from iot_remote_access.arm.proof_of_possession import der, thumbprint
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.constructs.azure.provisioning_service import ProvisioningService
from iot_remote_access.core import azure_rules
from iot_remote_access.core.tree import Construct


class DpsCertificate(ArmResource):
    """The CA certificate on ``dps``, verified, so enrollment groups can use it.

    Same proof-of-possession sequence as ``HubCertificate``, through the DPS API
    (ETags with ``If-Match`` on every step).
    """

    kind = "DPS CA certificate"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dps: ProvisioningService,
        name: str,
        certificate: x509.Certificate,
    ) -> None:
        super().__init__(scope, construct_id, name=azure_rules.check_certificate_name(name))
        from azure.mgmt.iothubprovisioningservices import models as m

        self.dps = dps
        self.certificate = certificate
        self.thumbprint = thumbprint(certificate)
        #: The upload body as the SDK's ``CertificateResponse`` (DER, sent base64-encoded).
        self.description = m.CertificateResponse(
            properties=m.CertificateProperties(certificate=der(certificate))
        )

    @property
    def resource_id(self) -> str:
        return f"{self.dps.resource_id}/certificates/{self.name}"

    def desired_state(self) -> dict[str, Any]:
        return {"properties": {"thumbprint": self.thumbprint, "isVerified": True}}

    def needs_ca_key(self, live: dict[str, Any] | None) -> bool:
        return bool(self.changes(live))

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        client = ctx.clients.dps()
        group = self.dps.resource_group.name
        return read_or_none(
            self.label,
            client.dps_certificate.get,
            self.name,
            group,
            self.dps.name,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        if ctx.ca_key is None:
            raise ArmInputError(f"{self.label}: proof of possession is due; pass --ca-key-file")
        from azure.mgmt.iothubprovisioningservices import models as m

        client = ctx.clients.dps()
        group, dps = self.dps.resource_group.name, self.dps.name
        etag = live.get("etag") if live else None
        if live is None or live.get("properties", {}).get("thumbprint") != self.thumbprint:
            uploaded = client.dps_certificate.create_or_update(
                group,
                dps,
                self.name,
                self.description,
                etag=etag,
                match_condition=MatchConditions.IfNotModified if etag else None,
            )
            etag = uploaded.etag
            ctx.progress.done(f"uploading {self.label}")
        if etag is None:
            raise ArmOperationError(
                self.label, "MissingETag", "Azure returned no ETag for the certificate"
            )
        nonce = client.dps_certificate.generate_verification_code(
            self.name, group, dps, etag=etag, match_condition=MatchConditions.IfNotModified
        )
        code = nonce.properties.verification_code if nonce.properties else None
        if not code or not nonce.etag:
            raise ArmOperationError(
                self.label, "MissingVerificationCode", "Azure returned no verification code"
            )
        proof = ctx.ca_key.sign_verification_certificate(self.certificate, code)
        client.dps_certificate.verify_certificate(
            self.name,
            group,
            dps,
            m.VerificationCodeRequest(certificate=proof),
            etag=nonce.etag,
            match_condition=MatchConditions.IfNotModified,
        )
        ctx.progress.done(f"proving possession of the CA key for {self.label}")
