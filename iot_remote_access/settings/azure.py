"""The ``azure`` settings section: what the Azure stack deploys and where.

Read by ``iot-remote-access azure plan|deploy --settings FILE``. Every value is
checked here, before any call to Azure; messages name the field, the value and
what is allowed. Secure defaults (X.509 only, no SAS, TLS 1.2) are not settings
at all: they are fixed in the constructs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from iot_remote_access.core import azure_rules
from iot_remote_access.core.bounded_input import excerpt
from iot_remote_access.settings.base import SettingsSection

#: Units per hub allowed by each IoT Hub tier.
_MAX_UNITS = {"F1": 1, "B1": 200, "B2": 200, "B3": 10, "S1": 200, "S2": 200, "S3": 10}


class IpFilterRuleSettings(SettingsSection):
    """One IoT Hub IP filter rule, applied in order."""

    name: str = Field(min_length=1, max_length=128)
    action: Literal["Accept", "Reject"]
    ip_mask: str

    @field_validator("ip_mask")
    @classmethod
    def _mask(cls, value: str) -> str:
        return azure_rules.check_ipv4_mask(value)


class IotHubSettings(SettingsSection):
    """The IoT hub.

    Default: S1 with one unit, 4 device-to-cloud partitions, public network
    access on (devices in the field connect over the internet; restrict with
    ``ipFilterRules``).
    """

    name: str
    sku: Literal["F1", "B1", "B2", "B3", "S1", "S2", "S3"] = "S1"
    units: int = Field(default=1, ge=1)
    #: Device-to-cloud partitions. Default: 4 (2 on F1, the only count F1 allows).
    partition_count: int | None = Field(default=None, ge=2, le=128)
    public_network_access: Literal["Enabled", "Disabled"] = "Enabled"
    ip_filter_rules: tuple[IpFilterRuleSettings, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return azure_rules.check_hub_name(value)

    @field_validator("partition_count")
    @classmethod
    def _partitions(cls, value: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("sku") == "F1" and value not in (None, 2):
            raise ValueError(f"{value} partitions; allowed for sku F1: 2")
        return value

    @property
    def partitions(self) -> int:
        if self.partition_count is not None:
            return self.partition_count
        return 2 if self.sku == "F1" else 4

    @field_validator("units")
    @classmethod
    def _units(cls, value: int, info: ValidationInfo) -> int:
        sku = info.data.get("sku")
        if sku in _MAX_UNITS and value > _MAX_UNITS[sku]:
            raise ValueError(f"{value} units; allowed for sku {sku}: 1 to {_MAX_UNITS[sku]}")
        return value


class CaCertificateSettings(SettingsSection):
    """The fleet's CA certificate (public part only), registered with proof of possession.

    ``file`` is relative to the settings file. The CA's private key is never a
    setting: ``azure deploy --ca-key-file`` reads it when a proof is due.
    Default name: ``fleet-ca``.
    """

    name: str = "fleet-ca"
    file: Path

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return azure_rules.check_certificate_name(value)


class ProvisioningSettings(SettingsSection):
    """The Device Provisioning Service, linked to the hub with its managed identity.

    Default: allocation policy ``Hashed``, one S1 unit.
    """

    name: str
    allocation_policy: Literal["Hashed", "GeoLatency", "Static"] = "Hashed"
    units: int = Field(default=1, ge=1, le=10)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return azure_rules.check_dps_name(value)


class AzureSettings(SettingsSection):
    """Settings of the Azure deployment (the ``azure`` key of FleetSettings).

    Default: no CA, no DPS, Device Streams off, no diagnostics; with Device
    Streams on, a Log Analytics workspace and an action group are required,
    because interactive access without an audit trail and an alert is not offered.
    """

    location: str
    iot_hub: IotHubSettings
    ca_certificate: CaCertificateSettings | None = None
    provisioning: ProvisioningSettings | None = None
    log_analytics_workspace_id: str | None = None
    diagnostic_categories: tuple[str, ...] = azure_rules.DEFAULT_IOT_HUB_LOG_CATEGORIES
    alert_action_group_id: str | None = None
    #: More than this many Device Streams opened by one device in a day raises
    #: the alert (the TunnelOpenCount threshold on AWS).
    max_streams_per_device_per_day: int = Field(default=3, ge=1, le=10_000)
    device_streams: bool = False
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        return azure_rules.check_location(value)

    @field_validator("log_analytics_workspace_id")
    @classmethod
    def _workspace(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return azure_rules.check_resource_id(
            value, namespace="Microsoft.OperationalInsights", resource_type="workspaces"
        )

    @field_validator("alert_action_group_id")
    @classmethod
    def _action_group(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return azure_rules.check_resource_id(
            value, namespace="Microsoft.Insights", resource_type="actionGroups"
        )

    @field_validator("diagnostic_categories")
    @classmethod
    def _categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for category in value:
            if category not in azure_rules.IOT_HUB_LOG_CATEGORIES:
                raise ValueError(
                    f"{excerpt(category)} is not an IoT Hub log category; allowed: "
                    + ", ".join(azure_rules.IOT_HUB_LOG_CATEGORIES)
                )
        if len(set(value)) != len(value):
            raise ValueError(f"{list(value)!r} lists a category twice; allowed: each once")
        return value

    @field_validator("device_streams")
    @classmethod
    def _streams(cls, value: bool, info: ValidationInfo) -> bool:
        if not value:
            return value
        location = info.data.get("location")
        if location is not None:
            azure_rules.check_device_streams_region(location)
        missing = [
            alias
            for field, alias in (
                ("log_analytics_workspace_id", "logAnalyticsWorkspaceId"),
                ("alert_action_group_id", "alertActionGroupId"),
            )
            if field in info.data and info.data[field] is None
        ]
        if missing:
            raise ValueError(
                f"true needs {' and '.join(missing)}: stream opens are audited in Log "
                "Analytics and alerted on; allowed: set them, or deviceStreams: false"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag in value.items():
            if not key or len(key) > 512 or any(ch in key for ch in "<>%&\\?/"):
                raise ValueError(
                    f"tag name {excerpt(key)}; allowed: 1 to 512 characters without < > % & \\ ? /"
                )
            if len(tag) > 256:
                raise ValueError(
                    f"tag {excerpt(key)} value is {len(tag)} characters; allowed: up to 256"
                )
        return value

    def hub_log_categories(self) -> tuple[str, ...]:
        """The configured categories, plus DeviceStreams when streams are on (for the alert)."""
        categories = self.diagnostic_categories
        if self.device_streams and "DeviceStreams" not in categories:
            categories = (*categories, "DeviceStreams")
        return categories
