"""The reference stack: device policy, guard and cdk-nag wired, cfn-lint clean."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iot as iot
from aws_cdk.assertions import Match

from iot_remote_access.core.cfn_intrinsics import string_alternatives
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack
from tests.support.aws_synth import cfn_lint_errors, synth_checked

THING = "${iot:Connection.Thing.ThingName}"
ARN = "arn:aws:iot:eu-west-1:123456789012"


def _statements_as_text(template: object) -> dict[str, list[str]]:
    """Actions -> the statement's resources as ARN text (pseudo parameters filled in)."""
    (policy,) = template.find_resources("AWS::IoT::Policy").values()  # type: ignore[attr-defined]
    result = {}
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        actions = statement["Action"]
        key = "+".join(actions) if isinstance(actions, list) else actions
        result[key] = [string_alternatives(r)[0] for r in resources]
    return result


def test_reference_stack_passes_nag_guard_and_cfn_lint(tmp_path: Path) -> None:
    _, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref"), tmp_path
    )
    template.resource_count_is("AWS::IoT::Policy", 1)
    assert cfn_lint_errors(template_file) == []


def test_device_policy_uses_configured_topics(tmp_path: Path) -> None:
    settings = FleetSettings.parse(
        {"telemetryTopic": "fleet/{thing}/up", "commandsTopic": "fleet/{thing}/down"}
    )
    _, template, _ = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings), tmp_path
    )
    prefix = "arn:aws:iot:region:123456789012:"
    assert _statements_as_text(template) == {
        "iot:Connect": [f"{prefix}client/{THING}"],
        "iot:Publish": [f"{prefix}topic/fleet/{THING}/up"],
        # The tunnel notify topic: Secure Tunneling is on by default (settings ``tunneling``).
        # Subscribe and Receive share a statement (docs/topics-v2.md: the 2,048 limit).
        "iot:Subscribe+iot:Receive": [
            f"{prefix}topicfilter/fleet/{THING}/down",
            f"{prefix}topicfilter/$aws/things/{THING}/tunnels/notify",
            f"{prefix}topic/fleet/{THING}/down",
            f"{prefix}topic/$aws/things/{THING}/tunnels/notify",
        ],
    }
    template.has_resource_properties(
        "AWS::IoT::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "iot:Connect",
                                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_guard_fails_synth_on_a_foreign_wildcard_policy(tmp_path: Path) -> None:
    """A policy this library did not make, added to the stack, stops synthesis."""

    def build(app: cdk.App) -> cdk.Stack:
        stack = IotRemoteAccessStack(app, "Ref")
        iot.CfnPolicy(
            stack,
            "Foreign",
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Subscribe",
                        "Resource": f"{ARN}:topicfilter/dt/+/telemetry",
                    }
                ],
            },
        )
        return stack

    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed.*Ref/Foreign.*IRA002"):
        synth_checked(build, tmp_path)
    report = (tmp_path / "validation-report.json").read_text()
    assert "IRA002 topic-wildcard" in report


def test_guard_can_be_acknowledged_like_cdk_nag(tmp_path: Path) -> None:
    """Acknowledgements use CDK's Validations API, with a reason, as cdk-nag 3's do."""

    def build(app: cdk.App) -> cdk.Stack:
        stack = IotRemoteAccessStack(app, "Ref")
        legacy = iot.CfnPolicy(
            stack,
            "Legacy",
            policy_document={
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": f"{ARN}:client/gateway-1",
                        "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                    }
                ],
            },
        )
        cdk.Validations.of(legacy).acknowledge(
            cdk.Acknowledgment(
                id="IotPolicyGuard::IRA004-connect-not-bound-to-thing",
                reason="gateway-1 predates the thing-name convention; replaced in Q3",
            )
        )
        return stack

    synth_checked(build, tmp_path)
