"""DiagnosticSettings: a resource's logs and metrics to a Log Analytics workspace (generic ARM PUT).

azure-mgmt-monitor 7.0.0 has no diagnostic-settings operations, so this is a
:class:`~iot_remote_access.arm.generic.GenericArmResource` of type
``Microsoft.Insights/diagnosticSettings`` (an extension resource of the target).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iot_remote_access.arm.generic import GenericArmResource
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core import azure_rules
from iot_remote_access.core.tree import Construct

RESOURCE_TYPE = "Microsoft.Insights/diagnosticSettings"
API_VERSION = "2021-05-01-preview"


class DiagnosticSettings(GenericArmResource):
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
        properties: dict[str, Any] = {
            "workspaceId": workspace_id,
            "logs": [{"category": category, "enabled": True} for category in log_categories],
        }
        if metrics:
            properties["metrics"] = [{"category": "AllMetrics", "enabled": True}]
        super().__init__(
            scope,
            construct_id,
            label_name=f"{name} on {target.label}",
            target=target,
            resource_type=RESOURCE_TYPE,
            api_version=API_VERSION,
            resource_name=name,
            properties=properties,
        )
        azure_rules.check_resource_id(
            workspace_id, namespace="Microsoft.OperationalInsights", resource_type="workspaces"
        )
        if not log_categories:
            raise ValueError(
                f"{self.label}: log_categories is empty; allowed: at least one category"
            )
        self.setting_name = name
