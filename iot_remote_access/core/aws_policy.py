"""Render a device's topic grants as an AWS IoT policy document.

One document for the whole fleet: every resource names the connecting thing
through the policy variable ``${iot:Connection.Thing.ThingName}``, so each
certificate reaches only its own thing's topics. Thing policy variables work
only when the MQTT client id equals the thing name, which the Connect
statement enforces together with ``iot:Connection.Thing.IsAttached``.

Size: AWS IoT refuses a policy document over 2,048 characters (whitespace not
counted). The statements carry no Sid (86 characters the limit needs more; each
is named by its action: Connect, Publish, Subscribe+Receive), Subscribe and
Receive share one statement (each action is checked
only against its own resource type, ``topicfilter/`` or ``topic/``, so mixing
them in one list grants nothing more), and :func:`check_policy_size` measures
the worst case (the longest partition and region) before a document is used.

The one variable level is the Jobs update topic for any job id
(``DeviceAccess.any_job_id``):
``topic/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*/update``.
IAM's ``*`` may match any characters, ``/`` included, but only after the fixed
prefix ``$aws/things/<own thing>/jobs/``; a thing name cannot contain ``/``, so
no other thing's topic starts with that prefix: the device reaches only its own
thing's job topics (the reach analysis reports it LOW, inside the own namespace).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from iot_remote_access.core.policy_check import THING_NAME_VARIABLE
from iot_remote_access.core.topics import (
    JOB_ID_PLACEHOLDER,
    THING_PLACEHOLDER,
    Access,
    DeviceAccess,
    Shadows,
    TopicModelError,
)

#: Builds the ARN of an IoT resource such as "topic/dt/x/telemetry". The CDK
#: construct passes Stack.format_arn (partition, region and account as
#: CloudFormation references); tests pass plain string formatting.
ArnBuilder = Callable[[str], Any]

#: AWS IoT's limit on a policy document (AWS IoT Core quotas, "policy document size").
MAX_POLICY_CHARS = 2048
#: The longest partition + region an ARN can carry (aws-us-gov/us-gov-west-1 and
#: aws-iso-b/us-isob-east-1 are the longest pairs: 23 characters together).
WORST_CASE_PARTITION = "aws-iso-b"
WORST_CASE_REGION = "us-isob-east-1"


def device_policy_document(access: DeviceAccess, arn: ArnBuilder) -> dict[str, Any]:
    """The IoT policy document for ``access``: exact resources, except the job-id level."""
    publish: list[Any] = []
    subscribe: list[Any] = []
    receive: list[Any] = []
    folded: set[str] = set()
    for grant in access.grants():
        topic = _resource_topic(grant.template)
        if grant.access is Access.PUBLISH:
            publish.append(arn(f"topic/{topic}"))
            continue
        if grant.fold is not None:
            # AWS-reserved answers (shadow, jobs) fold into "<own prefix>/*".
            topic = _resource_topic(grant.fold) + "/*"
            if topic in folded:
                continue
            folded.add(topic)
        subscribe.append(arn(f"topicfilter/{topic}"))
        receive.append(arn(f"topic/{topic}"))
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": arn(f"client/{THING_NAME_VARIABLE}"),
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        },
        {
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": publish,
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Subscribe", "iot:Receive"],
            "Resource": [*subscribe, *receive],
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def folded_resources(access: DeviceAccess) -> tuple[str, ...]:
    """The topics the document names with ``*`` (folds and the any-job-id level)."""
    topics = {
        _resource_topic(grant.fold) + "/*" if grant.fold is not None else _resource_topic(t)
        for grant in access.grants()
        for t in (grant.template,)
        if grant.fold is not None or "*" in _resource_topic(t)
    }
    return tuple(sorted(topics))


def _resource_topic(template: str) -> str:
    return template.replace(THING_PLACEHOLDER, THING_NAME_VARIABLE).replace(JOB_ID_PLACEHOLDER, "*")


def plain_arn(
    region: str = "eu-west-1", account: str = "123456789012", partition: str = "aws"
) -> ArnBuilder:
    """An ArnBuilder for documents rendered outside CloudFormation."""
    return lambda resource: f"arn:{partition}:iot:{region}:{account}:{resource}"


def policy_size(document: dict[str, Any]) -> int:
    """Characters AWS counts: the document without whitespace outside strings."""
    return len(json.dumps(document, separators=(",", ":")))


def worst_case_policy_size(access: DeviceAccess) -> int:
    """The size of ``access``'s document in the longest partition and region."""
    arn = plain_arn(WORST_CASE_REGION, "123456789012", WORST_CASE_PARTITION)
    return policy_size(device_policy_document(access, arn))


def check_policy_size(access: DeviceAccess) -> int:
    """The worst-case size, or TopicModelError naming the capability that crosses the limit."""
    size = worst_case_policy_size(access)
    if size <= MAX_POLICY_CHARS:
        return size
    raise TopicModelError(
        _first_field_over_limit(access),
        f"the device policy would be {size} characters in the longest AWS partition and "
        f"region; AWS IoT allows at most {MAX_POLICY_CHARS}: grant fewer topics "
        "(e.g. fewer shadow operations or named shadows, fewer custom topics)",
    )


def _first_field_over_limit(access: DeviceAccess) -> str:
    """Add the capabilities one by one, in settings order; name the one that crosses."""
    base = replace(
        access,
        tunneling=False,
        rotation=False,
        jobs=False,
        job_ids=(),
        any_job_id=False,
        command_responses=False,
        shadows=Shadows(),
        custom=(),
    )
    steps: list[tuple[str, DeviceAccess]] = [("topics", base)]
    for name, change in (
        ("commands", {"command_responses": access.command_responses}),
        ("certificates", {"rotation": access.rotation}),
        ("tunneling", {"tunneling": access.tunneling}),
        ("topics.jobs", {"jobs": access.jobs, "job_ids": access.job_ids}),
        ("topics.jobs.anyJobId", {"any_job_id": access.any_job_id}),
        ("topics.shadows", {"shadows": access.shadows}),
        ("topics.custom", {"custom": access.custom}),
    ):
        steps.append((name, replace(steps[-1][1], **change)))
    for name, step in steps:
        if worst_case_policy_size(step) > MAX_POLICY_CHARS:
            return name
    return "topics"
