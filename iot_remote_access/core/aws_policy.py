"""Render a device's topic grants as an AWS IoT policy document.

One document for the whole fleet: every resource names the connecting thing
through the policy variable ``${iot:Connection.Thing.ThingName}``, so each
certificate reaches only its own thing's topics. Thing policy variables work
only when the MQTT client id equals the thing name, which the Connect
statement enforces together with ``iot:Connection.Thing.IsAttached``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iot_remote_access.core.policy_check import THING_NAME_VARIABLE
from iot_remote_access.core.topics import THING_PLACEHOLDER, Access, DeviceAccess

#: Builds the ARN of an IoT resource such as "topic/dt/x/telemetry". The CDK
#: construct passes Stack.format_arn (partition, region and account as
#: CloudFormation references); tests pass plain string formatting.
ArnBuilder = Callable[[str], Any]


def device_policy_document(access: DeviceAccess, arn: ArnBuilder) -> dict[str, Any]:
    """The IoT policy document for ``access``; exact resources only, never a wildcard."""
    publish: list[Any] = []
    subscribe: list[Any] = []
    receive: list[Any] = []
    for grant in access.grants():
        topic = grant.template.replace(THING_PLACEHOLDER, THING_NAME_VARIABLE)
        if grant.access is Access.PUBLISH:
            publish.append(arn(f"topic/{topic}"))
        else:
            subscribe.append(arn(f"topicfilter/{topic}"))
            receive.append(arn(f"topic/{topic}"))
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ConnectAsOwnThingOnly",
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": arn(f"client/{THING_NAME_VARIABLE}"),
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        },
        {
            "Sid": "PublishOwnTopics",
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": publish,
        },
        {
            "Sid": "SubscribeOwnTopics",
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": subscribe,
        },
        {
            "Sid": "ReceiveOwnTopics",
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": receive,
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def plain_arn(region: str = "eu-west-1", account: str = "123456789012") -> ArnBuilder:
    """An ArnBuilder for documents rendered outside CloudFormation."""
    return lambda resource: f"arn:aws:iot:{region}:{account}:{resource}"
