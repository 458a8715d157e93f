"""Azure constructs: one Azure resource kind per module, desired state as SDK model objects.

A plain-Python construct tree (``iot_remote_access.core.tree``): no Node.js.

Deployed by ``iot_remote_access.arm.deployment`` (``iot-remote-access azure plan|deploy``).
Needs the ``azure`` extra.
"""

from iot_remote_access.arm.generic import GenericArmResource
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.constructs.azure.anchor_storage import (
    AnchorStorageAccount,
    ImmutableAnchorContainer,
)
from iot_remote_access.constructs.azure.device_streams import DeviceStreams
from iot_remote_access.constructs.azure.diagnostic_settings import DiagnosticSettings
from iot_remote_access.constructs.azure.dps_certificate import DpsCertificate
from iot_remote_access.constructs.azure.dps_hub_link import DpsHubLink
from iot_remote_access.constructs.azure.hub_certificate import HubCertificate
from iot_remote_access.constructs.azure.iot_hub import IotHub, IpFilterRule
from iot_remote_access.constructs.azure.provisioning_service import ProvisioningService
from iot_remote_access.constructs.azure.role_assignment import RoleAssignment
from iot_remote_access.constructs.azure.stream_alert import StreamAlert

__all__ = [
    "AnchorStorageAccount",
    "ArmResource",
    "DeviceStreams",
    "DiagnosticSettings",
    "DpsCertificate",
    "DpsHubLink",
    "GenericArmResource",
    "HubCertificate",
    "ImmutableAnchorContainer",
    "IotHub",
    "IpFilterRule",
    "ProvisioningService",
    "RoleAssignment",
    "StreamAlert",
]
