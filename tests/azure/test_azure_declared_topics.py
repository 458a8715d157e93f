"""Declared publish topics (topic model v2) reach Azure IoT Hub routing; AWS-only ones never.

The settings are refused when the AWS device policy would exceed 2,048 characters
even for an Azure deployment: like the thing-name rule, AWS's limits hold for
every cloud so that one fleet can move between clouds.
"""

from __future__ import annotations

from iot_remote_access.core.tree import Root
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.azure_stack import AzureStack
from tests.support.azure_helpers import resource_group


def test_hub_routes_include_declared_publish_topics_only() -> None:
    settings = FleetSettings.parse(
        {
            "azure": {"location": "northeurope", "iotHub": {"name": "fleet-hub"}},
            "topics": {
                "custom": [
                    {"name": "health", "template": "dt/{thing}/health", "access": "publish"},
                    {"name": "desired", "template": "cfg/{thing}/desired", "access": "subscribe"},
                ],
                "shadows": {"classic": True, "operations": ["update"]},
            },
        }
    )
    stack = AzureStack(Root("azure"), "Fleet", settings=settings, resource_group=resource_group())
    routes = stack.hub.desired_state()["properties"]["routing"]["routes"]
    assert [(r["name"], r["condition"]) for r in routes] == [
        ("telemetry", "topic = CONCAT('dt/', $connectionDeviceId, '/telemetry')"),
        ("custom-health", "topic = CONCAT('dt/', $connectionDeviceId, '/health')"),
    ]
