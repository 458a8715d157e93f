"""StreamAlert: alert when a device opens more than T Device Streams a day (TunnelOpenCount)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from iot_remote_access.arm.clients import ResourceGroupRef, read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.constructs.azure.iot_hub import IotHub
from iot_remote_access.core import azure_rules
from iot_remote_access.core.tree import Construct


class StreamAlert(ArmResource):
    """A scheduled query (log) alert rule on the hub's DeviceStreams logs in Log Analytics.

    Every hour it counts stream requests per device over the last day and fires,
    per device, when the count is above ``max_streams_per_device_per_day``; the
    alert goes to ``action_group_id``. It needs the hub's DeviceStreams log
    category sent to ``workspace_id`` (``DiagnosticSettings``). Query validation
    is skipped at creation because a new workspace has no DeviceStreams records
    (and so no columns) yet; the query guards itself with ``column_ifexists``.

    :param max_streams_per_device_per_day: Default: 3.
    :param severity: 0 (critical) to 4. Default: 2.
    :param name: Default: ``{hub}-device-streams-per-device``.
    """

    kind = "stream alert rule"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_group: ResourceGroupRef,
        hub: IotHub,
        workspace_id: str,
        action_group_id: str,
        max_streams_per_device_per_day: int = 3,
        severity: int = 2,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id, name=name or f"{hub.name}-device-streams-per-device")
        if not 1 <= max_streams_per_device_per_day <= 10_000:
            raise ValueError(
                f"max_streams_per_device_per_day {max_streams_per_device_per_day}; "
                "allowed: 1 to 10000"
            )
        if not 0 <= severity <= 4:
            raise ValueError(f"severity {severity}; allowed: 0 to 4")
        azure_rules.check_resource_id(
            workspace_id, namespace="Microsoft.OperationalInsights", resource_type="workspaces"
        )
        azure_rules.check_resource_id(
            action_group_id, namespace="Microsoft.Insights", resource_type="actionGroups"
        )
        from azure.mgmt.monitor import models as m

        self.resource_group = resource_group
        self.hub = hub
        #: The desired rule as the SDK's ``ScheduledQueryRuleResource``.
        self.rule = m.ScheduledQueryRuleResource(
            location=hub.location,
            tags={**(tags or {}), "managed-by": "iot-remote-access"},
            kind="LogAlert",
            display_name=(
                f"{hub.name}: a device opened more than "
                f"{max_streams_per_device_per_day} streams in a day"
            ),
            description=(
                "Device Streams opened per device over the last 24 hours, from the IoT hub's "
                "DeviceStreams logs; an unusual count can mean a forgotten or abused session."
            ),
            severity=severity,
            enabled=True,
            scopes=[workspace_id],
            evaluation_frequency=datetime.timedelta(hours=1),
            window_size=datetime.timedelta(days=1),
            criteria=m.ScheduledQueryRuleCriteria(
                all_of=[
                    m.Condition(
                        query=azure_rules.stream_count_query(hub.resource_id),
                        time_aggregation="Total",
                        metric_measure_column="streamsOpened",
                        dimensions=[m.Dimension(name="deviceId", operator="Include", values=["*"])],
                        operator="GreaterThan",
                        threshold=float(max_streams_per_device_per_day),
                        failing_periods=m.ConditionFailingPeriods(
                            number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                        ),
                    )
                ]
            ),
            actions=m.Actions(action_groups=[action_group_id]),
            auto_mitigate=False,
            skip_query_validation=True,
        )

    @property
    def resource_id(self) -> str:
        return self.resource_group.resource_id("Microsoft.Insights/scheduledQueryRules", self.name)

    def desired_state(self) -> dict[str, Any]:
        return dict(self.rule.serialize())

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        client = ctx.clients.monitor()
        return read_or_none(
            self.label,
            client.scheduled_query_rules.get,
            self.resource_group.name,
            self.name,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        ctx.clients.monitor().scheduled_query_rules.create_or_update(
            self.resource_group.name, self.name, self.rule
        )
        ctx.progress.done(f"{'creating' if live is None else 'updating'} {self.label}")
