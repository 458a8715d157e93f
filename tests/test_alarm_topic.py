"""AlarmTopic: KMS-encrypted, TLS-only, publishable by CloudWatch/EventBridge/IoT of this account."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk.assertions import Match
from cdk_nag import AwsSolutionsChecks

from iot_remote_access.constructs.aws import AlarmTopic, alarms
from iot_remote_access.constructs.aws.library_function import stage_handler_code
from tests.support.aws_synth import cfn_lint_errors, synth_checked


def _stack(app: cdk.App, **kwargs: object) -> cdk.Stack:
    stack = cdk.Stack(
        app, "Alarms", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )
    AlarmTopic(stack, "Alarms", **kwargs)  # type: ignore[arg-type]
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks(stack))
    return stack


def test_topic_is_encrypted_tls_only_and_scoped_to_the_account(tmp_path: Path) -> None:
    _, template, template_file = synth_checked(
        lambda app: _stack(app, email_addresses=["ops@example.com"]), tmp_path
    )
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ),
                        Match.object_like(
                            {
                                "Sid": "AllowAlarmPublishers",
                                "Action": "sns:Publish",
                                "Principal": {
                                    "Service": Match.array_with(
                                        ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
                                    )
                                },
                                "Condition": {
                                    "StringEquals": {"aws:SourceAccount": "123456789012"}
                                },
                            }
                        ),
                    ]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    assert cfn_lint_errors(template_file) == []


def test_bad_email_is_refused_at_synth() -> None:
    with pytest.raises(ValueError, match=r"email_addresses: 'ops-at-example' is not an e-mail"):
        _stack(cdk.App(), email_addresses=["ops-at-example"])


def test_unknown_handler_package_is_refused() -> None:
    with pytest.raises(ValueError, match=r"handler_package: 'nope' has no handler\.py"):
        stage_handler_code("nope")


def test_shared_alarm_helper_applies_the_library_conventions(tmp_path: Path) -> None:
    """One helper for every alarm: at or above, one period, missing data not breaching."""

    def build(app: cdk.App) -> cdk.Stack:
        stack = _stack(app)
        topic = AlarmTopic(stack, "Second").topic
        incidents = AlarmTopic(stack, "Incidents").topic
        metric = cloudwatch.Metric(namespace="Platform", metric_name="Failures")
        alarms.alarm(stack, "Plain", metric=metric, threshold=1, description="d", topic=topic)
        alarms.alarm(
            stack,
            "Paging",
            metric=metric,
            threshold=3,
            description="p",
            topic=topic,
            also=(incidents,),
            ok=True,
            comparison=alarms.ABOVE,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            missing=alarms.BREACHING,
        )
        return stack

    _, template, _ = synth_checked(build, tmp_path)
    topic_ref = {"Ref": Match.string_like_regexp("SecondTopic")}
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": "d",
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": Match.absent(),
            "TreatMissingData": "notBreaching",
            "AlarmActions": [topic_ref],
            "OKActions": Match.absent(),
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": "p",
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "TreatMissingData": "breaching",
            "AlarmActions": [topic_ref, {"Ref": Match.string_like_regexp("IncidentsTopic")}],
            "OKActions": [topic_ref],
        },
    )


def test_shared_alarm_helper_refuses_zero_periods() -> None:
    stack = _stack(cdk.App())
    metric = cloudwatch.Metric(namespace="Platform", metric_name="Failures")
    topic = AlarmTopic(stack, "Second").topic
    with pytest.raises(ValueError, match=r"evaluation_periods: 0; allowed: 1 or more"):
        alarms.alarm(
            stack,
            "A",
            metric=metric,
            threshold=1,
            description="d",
            topic=topic,
            evaluation_periods=0,
        )
