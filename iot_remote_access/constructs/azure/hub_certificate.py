"""HubCertificate: the fleet CA registered with an IoT hub and verified by proof of possession."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from iot_remote_access.arm.clients import read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.errors import ArmInputError
from iot_remote_access.arm.proof_of_possession import pem, thumbprint
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.constructs.azure.iot_hub import IotHub
from iot_remote_access.core import azure_rules
from iot_remote_access.core.tree import Construct


class HubCertificate(ArmResource):
    """The CA certificate (public part) on ``hub``, verified: devices whose
    X.509 certificates chain to it can authenticate.

    Verification is Azure's proof of possession: generate a verification code,
    sign a certificate with that code as CN using the CA key, verify. The key
    comes from the deploy context (``ArmContext.ca_key``) only when a proof is due.
    """

    kind = "IoT hub CA certificate"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        hub: IotHub,
        name: str,
        certificate: x509.Certificate,
    ) -> None:
        super().__init__(scope, construct_id, name=azure_rules.check_certificate_name(name))
        self.hub = hub
        self.certificate = certificate
        self.thumbprint = thumbprint(certificate)
        m = hub.models()
        #: The upload body as the SDK's ``CertificateDescription``.
        self.description: Any = m.CertificateDescription(
            properties=m.CertificateProperties(certificate=pem(certificate))
        )

    @property
    def resource_id(self) -> str:
        return f"{self.hub.resource_id}/certificates/{self.name}"

    def desired_state(self) -> dict[str, Any]:
        return {"properties": {"thumbprint": self.thumbprint, "isVerified": True}}

    def needs_ca_key(self, live: dict[str, Any] | None) -> bool:
        return bool(self.changes(live))

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        client = ctx.clients.iot_hub(self.hub.api_version)
        group = self.hub.resource_group.name
        return read_or_none(
            self.label,
            client.certificates.get,
            group,
            self.hub.name,
            self.name,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        if ctx.ca_key is None:
            raise ArmInputError(f"{self.label}: proof of possession is due; pass --ca-key-file")
        client = ctx.clients.iot_hub(self.hub.api_version)
        m = self.hub.models()
        group, hub = self.hub.resource_group.name, self.hub.name
        etag = live.get("etag") if live else None
        if live is None or live.get("properties", {}).get("thumbprint") != self.thumbprint:
            uploaded = client.certificates.create_or_update(
                group, hub, self.name, self.description, if_match=etag
            )
            etag = uploaded.etag
            ctx.progress.done(f"uploading {self.label}")
        nonce = client.certificates.generate_verification_code(group, hub, self.name, if_match=etag)
        proof = ctx.ca_key.sign_verification_certificate(
            self.certificate, nonce.properties.verification_code
        )
        client.certificates.verify(
            group,
            hub,
            self.name,
            if_match=nonce.etag,
            certificate_verification_body=m.CertificateVerificationDescription(certificate=proof),
        )
        ctx.progress.done(f"proving possession of the CA key for {self.label}")
