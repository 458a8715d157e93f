"""Azure Monitor alert notifications of the Device Streams alert, as an action group's
webhook POSTs them with the common alert schema on.

Source of the shape: Microsoft's "Common alert schema" reference
(https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-common-schema), its
sample of a log search alert (``monitoringService: "Log Alerts V2"``): ``schemaId``,
``data.essentials`` (alertId, alertRule, severity, signalType, monitorCondition,
monitoringService, alertTargetIDs, firedDateTime, resolvedDateTime, description) and
``data.alertContext.condition`` (windowStartTime, windowEndTime, ``allOf`` with
searchQuery, metricMeasureColumn, operator, threshold, timeAggregation, ``dimensions``
as name/value pairs, ``metricValue``). Values are ours: the rule ``StreamAlert``
creates (split by ``deviceId``, measure ``streamsOpened``), our hub and device.
"""

from __future__ import annotations

from typing import Any

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
HUB = (
    f"/subscriptions/{SUBSCRIPTION}/resourcegroups/fleet-rg/providers/"
    "microsoft.devices/iothubs/fleet-hub"
)
RULE = "fleet-hub-device-streams-per-device"


def stream_alert(
    device: str, *, condition: str, streams: int, alert: str = "a1b2c3d4"
) -> dict[str, Any]:
    """A fired (or resolved) alert of the stream rule for ``device``."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{SUBSCRIPTION}/providers/"
                f"Microsoft.AlertsManagement/alerts/{alert}",
                "alertRule": RULE,
                "severity": "Sev2",
                "signalType": "Log",
                "monitorCondition": condition,
                "monitoringService": "Log Alerts V2",
                "alertTargetIDs": [HUB],
                "configurationItems": [HUB],
                "originAlertId": alert,
                "firedDateTime": "2026-12-02T05:00:12.0000000Z",
                "resolvedDateTime": "2026-12-02T09:00:07.0000000Z"
                if condition == "Resolved"
                else None,
                "description": "Device Streams opened per device over the last 24 hours",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {
                "properties": {},
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": "P1D",
                    "allOf": [
                        {
                            "searchQuery": "AzureDiagnostics | where Category == 'DeviceStreams'",
                            "metricMeasureColumn": "streamsOpened",
                            "targetResourceTypes": "['Microsoft.OperationalInsights/workspaces']",
                            "operator": "GreaterThan",
                            "threshold": "3",
                            "timeAggregation": "Total",
                            "dimensions": [{"name": "deviceId", "value": device}],
                            "metricValue": streams,
                            "failingPeriods": {
                                "numberOfEvaluationPeriods": 1,
                                "minFailingPeriodsToAlert": 1,
                            },
                        }
                    ],
                    "windowStartTime": "2026-12-01T05:00:00Z",
                    "windowEndTime": "2026-12-02T05:00:00Z",
                },
            },
        },
    }
