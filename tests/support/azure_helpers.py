"""Helpers for the Azure tests: a test CA, settings, and SDK clients pointed at the ARM stand-in.

``FakeCredential`` stands in for azure-identity: it hands the stand-in's fake
token to the real SDK clients (the CLI tests use the real DefaultAzureCredential,
which gets the same token from the stand-in's managed-identity endpoint).
"""

from __future__ import annotations

import datetime
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich.console import Console

from iot_remote_access.arm.clients import AzureClients, ResourceGroupRef
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.progress import ConsoleProgress
from iot_remote_access.arm.proof_of_possession import CaKey, load_ca_key
from tests.support.azure_arm_standin import FAKE_TOKEN, ArmStandIn

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
GROUP = "fleet-rg"
WORKSPACE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
    "Microsoft.OperationalInsights/workspaces/fleet-logs"
)
ACTION_GROUP = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
    "Microsoft.Insights/actionGroups/oncall"
)
HUB_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
    "Microsoft.Devices/IotHubs/fleet-hub"
)
DPS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
    "Microsoft.Devices/provisioningServices/fleet-dps"
)


class FakeCredential:
    """A fake azure-identity credential: returns the ARM stand-in's fake token, counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(FAKE_TOKEN, int(time.time()) + 3600)


@dataclass
class FleetCa:
    certificate_file: Path
    key_file: Path
    key_pem: str
    certificate: x509.Certificate


def make_ca(directory: Path, name: str = "Fleet Test CA") -> FleetCa:
    """A self-signed EC CA whose key is written to a file, as an operator would keep it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certificate_file = directory / f"{name.replace(' ', '-').lower()}.pem"
    key_file = directory / f"{name.replace(' ', '-').lower()}.key"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_file.write_text(key_pem)
    return FleetCa(certificate_file, key_file, key_pem, certificate)


def azure_section(ca: FleetCa | None = None, **overrides: Any) -> dict[str, Any]:
    """A complete ``azure`` settings section (camelCase, as in a settings file)."""
    section: dict[str, Any] = {
        "location": "northeurope",
        "iotHub": {
            "name": "fleet-hub",
            "ipFilterRules": [{"name": "office", "action": "Accept", "ipMask": "203.0.113.0/24"}],
        },
        "provisioning": {"name": "fleet-dps"},
        "logAnalyticsWorkspaceId": WORKSPACE,
        "alertActionGroupId": ACTION_GROUP,
        "deviceStreams": True,
        "maxStreamsPerDevicePerDay": 3,
    }
    if ca is not None:
        section["caCertificate"] = {"name": "fleet-ca", "file": str(ca.certificate_file)}
    section.update(overrides)
    return section


def clients_for(standin: ArmStandIn, *, retry_total: int = 3) -> AzureClients:
    """Real SDK clients aimed at the stand-in, with the fake credential."""
    return AzureClients(
        FakeCredential(),
        SUBSCRIPTION,
        endpoint=standin.endpoint,
        connection_verify=str(standin.ca_bundle),
        polling_interval=0.01,
        retry_total=retry_total,
    )


def context_for(
    standin: ArmStandIn, ca: FleetCa | None = None, *, retry_total: int = 3
) -> tuple[ArmContext, io.StringIO]:
    """An ArmContext on the stand-in; progress goes to the returned buffer."""
    buffer = io.StringIO()
    key: CaKey | None = None
    if ca is not None:
        key = load_ca_key(ca.key_file, certificate=ca.certificate)
    progress = ConsoleProgress(Console(file=buffer, force_terminal=False, width=200))
    return ArmContext(clients_for(standin, retry_total=retry_total), progress, key), buffer


def resource_group() -> ResourceGroupRef:
    return ResourceGroupRef(SUBSCRIPTION, GROUP)
