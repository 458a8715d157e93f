"""DiagnosticSettings: a resource's logs and metrics to a Log Analytics workspace (generic ARM PUT).

azure-mgmt-monitor 7.0.0 has no diagnostic-settings operations, so this goes
through azure-mgmt-resource's generic ``resources.begin_create_or_update_by_id``
on ``Microsoft.Insights/diagnosticSettings`` (an extension resource of the target).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from constructs import Construct

from iot_remote_access.arm.clients import read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core import azure_rules

API_VERSION = "2021-05-01-preview"


class DiagnosticSettings(ArmResource):
    """Send ``log_categories`` (and all metrics) of ``target`` to ``workspace_id``.

    :param name: Default: ``iot-remote-access``.
    :param metrics: send AllMetrics too. Default: True.
    """

    kind = "diagnostic settings"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        target: ArmResource,
        workspace_id: str,
        log_categories: Sequence[str],
        name: str = "iot-remote-access",
        metrics: bool = True,
    ) -> None:
        super().__init__(scope, construct_id, name=f"{name} on {target.label}")
        azure_rules.check_resource_id(
            workspace_id, namespace="Microsoft.OperationalInsights", resource_type="workspaces"
        )
        if not log_categories:
            raise ValueError(
                f"{self.label}: log_categories is empty; allowed: at least one category"
            )
        from azure.mgmt.resource.resources.models import GenericResource

        self.target = target
        self.setting_name = name
        properties: dict[str, Any] = {
            "workspaceId": workspace_id,
            "logs": [{"category": category, "enabled": True} for category in log_categories],
        }
        if metrics:
            properties["metrics"] = [{"category": "AllMetrics", "enabled": True}]
        #: The desired setting as the SDK's ``GenericResource``.
        self.resource = GenericResource(properties=properties)

    @property
    def resource_id(self) -> str | None:
        target = self.target.resource_id
        if target is None:
            return None
        return f"{target}/providers/Microsoft.Insights/diagnosticSettings/{self.setting_name}"

    def desired_state(self) -> dict[str, Any]:
        return {"properties": self.resource.properties}

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        resource_id = self.resource_id
        if resource_id is None:
            return None
        client = ctx.clients.resources()
        return read_or_none(
            self.label,
            client.resources.get_by_id,
            resource_id,
            api_version=API_VERSION,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        resource_id = self.resource_id
        if resource_id is None:
            raise ValueError(f"{self.label}: the target is not deployed yet")
        poller = ctx.clients.resources().resources.begin_create_or_update_by_id(
            resource_id, self.resource, api_version=API_VERSION
        )
        ctx.progress.wait(poller, f"{'creating' if live is None else 'updating'} {self.label}")
