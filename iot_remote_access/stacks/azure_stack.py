"""AzureStack: the reference deployment on Azure, composed from one FleetSettings."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from iot_remote_access.arm.clients import ResourceGroupRef
from iot_remote_access.arm.proof_of_possession import load_ca_certificate
from iot_remote_access.constructs.azure import (
    AnchorStorageAccount,
    DeviceStreams,
    DiagnosticSettings,
    DpsCertificate,
    DpsHubLink,
    HubCertificate,
    ImmutableAnchorContainer,
    IotHub,
    IpFilterRule,
    ProvisioningService,
    RoleAssignment,
    StreamAlert,
)
from iot_remote_access.core import azure_rules
from iot_remote_access.core.topics import DeviceAccess
from iot_remote_access.core.tree import Construct
from iot_remote_access.settings import FleetSettings
from iot_remote_access.settings.azure import (
    AzureSettings,
    CaCertificateSettings,
    ProvisioningSettings,
)


class AzureStack(Construct):
    """Composes the Azure constructs from ``settings.azure``; wiring only, no logic.

    In order: the IoT hub (with Device Streams when on), its CA certificate, the
    DPS with its CA certificate, the DPS identity's role on the hub, the DPS hub
    link, diagnostic settings to Log Analytics, the stream alert, and (with a ``ledger``
    section holding ``azure``) the access ledger's immutable anchor container.

    :param settings: must have an ``azure`` section.
    :param resource_group: where everything is deployed.
    :param settings_dir: where relative paths in the settings (the CA
        certificate file) are resolved. Default: the current directory.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FleetSettings,
        resource_group: ResourceGroupRef,
        settings_dir: Path | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        azure = settings.azure
        if azure is None:
            raise ValueError(
                "settings.azure is missing; allowed: an azure section with location and iotHub"
            )
        self.settings = settings
        self.hub = self._hub(azure, resource_group)
        self.device_streams = (
            DeviceStreams(self.hub, "DeviceStreams", hub=self.hub) if azure.device_streams else None
        )
        self.ca_certificate: x509.Certificate | None = None
        self.hub_certificate: HubCertificate | None = None
        if azure.ca_certificate is not None:
            self._hub_certificate(azure.ca_certificate, settings_dir)
        self.dps: ProvisioningService | None = None
        self.dps_certificate: DpsCertificate | None = None
        self.dps_hub_access: RoleAssignment | None = None
        self.dps_hub_link: DpsHubLink | None = None
        if azure.provisioning is not None:
            self._provisioning(azure, azure.provisioning, resource_group)
        self.hub_diagnostics: DiagnosticSettings | None = None
        self.dps_diagnostics: DiagnosticSettings | None = None
        self.stream_alert: StreamAlert | None = None
        if azure.log_analytics_workspace_id is not None:
            self._monitoring(azure, resource_group, azure.log_analytics_workspace_id)
        self.anchor_container = self._ledger_anchors(azure, resource_group)

    def _ledger_anchors(
        self, azure: AzureSettings, resource_group: ResourceGroupRef
    ) -> ImmutableAnchorContainer | None:
        """The access ledger's anchors in immutable blob storage (settings ``ledger.azure``)."""
        ledger = self.settings.ledger
        if not ledger.enabled or ledger.azure is None:
            return None
        account = AnchorStorageAccount(
            self,
            "LedgerAnchorAccount",
            resource_group=resource_group,
            name=ledger.azure.storage_account,
            location=azure.location,
            sku=ledger.azure.sku,
            tags=azure.tags,
        )
        return ImmutableAnchorContainer(
            account,
            "Container",
            account=account,
            retention_days=ledger.retention_days,
            name=ledger.azure.container,
        )

    def _hub(self, azure: AzureSettings, resource_group: ResourceGroupRef) -> IotHub:
        hub_settings = azure.iot_hub
        return IotHub(
            self,
            "IotHub",
            resource_group=resource_group,
            name=hub_settings.name,
            location=azure.location,
            sku=hub_settings.sku,
            units=hub_settings.units,
            partition_count=hub_settings.partitions,
            public_network_access=hub_settings.public_network_access,
            ip_filter_rules=[
                IpFilterRule(name=r.name, action=r.action, ip_mask=r.ip_mask)
                for r in hub_settings.ip_filter_rules
            ],
            device_access=DeviceAccess(topics=self.settings.topic_model()),
            tags=azure.tags,
        )

    def _hub_certificate(self, ca: CaCertificateSettings, settings_dir: Path | None) -> None:
        path = (settings_dir or Path.cwd()) / ca.file
        self.ca_certificate = load_ca_certificate(path, field="azure.caCertificate.file")
        self.hub_certificate = HubCertificate(
            self.hub, "CaCertificate", hub=self.hub, name=ca.name, certificate=self.ca_certificate
        )

    def _provisioning(
        self,
        azure: AzureSettings,
        provisioning: ProvisioningSettings,
        resource_group: ResourceGroupRef,
    ) -> None:
        dps = ProvisioningService(
            self,
            "Provisioning",
            resource_group=resource_group,
            name=provisioning.name,
            location=azure.location,
            allocation_policy=provisioning.allocation_policy,
            units=provisioning.units,
            tags=azure.tags,
        )
        self.dps = dps
        if self.ca_certificate is not None and azure.ca_certificate is not None:
            self.dps_certificate = DpsCertificate(
                dps,
                "CaCertificate",
                dps=dps,
                name=azure.ca_certificate.name,
                certificate=self.ca_certificate,
            )
        self.dps_hub_access = RoleAssignment(
            self,
            "DpsHubAccess",
            resource_group=resource_group,
            target=self.hub,
            role_definition=azure_rules.IOT_HUB_DATA_CONTRIBUTOR_ROLE,
            principal=lambda: dps.principal_id,
            description=f"IoT Hub Data Contributor for {dps.name} on {self.hub.name}",
        )
        self.dps_hub_link = DpsHubLink(self, "DpsHubLink", dps=dps, hub=self.hub)

    def _monitoring(
        self, azure: AzureSettings, resource_group: ResourceGroupRef, workspace: str
    ) -> None:
        self.hub_diagnostics = DiagnosticSettings(
            self,
            "HubDiagnostics",
            target=self.hub,
            workspace_id=workspace,
            log_categories=azure.hub_log_categories(),
        )
        if self.dps is not None:
            self.dps_diagnostics = DiagnosticSettings(
                self,
                "DpsDiagnostics",
                target=self.dps,
                workspace_id=workspace,
                log_categories=azure_rules.DPS_LOG_CATEGORIES,
            )
        if azure.device_streams and azure.alert_action_group_id is not None:
            self.stream_alert = StreamAlert(
                self,
                "StreamAlert",
                resource_group=resource_group,
                hub=self.hub,
                workspace_id=workspace,
                action_group_id=azure.alert_action_group_id,
                max_streams_per_device_per_day=azure.max_streams_per_device_per_day,
                tags=azure.tags,
            )
