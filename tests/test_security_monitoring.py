"""SecurityMonitoring in the reference stack: real synth, cdk-nag, the IoT policy guard, cfn-lint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from iot_remote_access.constructs.aws import (
    IotLogging,
    SecurityMonitoring,
    SecurityTopicRule,
    SiemExport,
)
from iot_remote_access.core.cfn_intrinsics import string_alternatives
from iot_remote_access.core.security_detections import (
    AUTHORIZATION_FAILURE_FILTER_PATTERN,
    DetectionConfig,
    evaluate_lifecycle_event,
    parse_alarm_routes,
)
from iot_remote_access.core.topics import Access, DeviceAccess
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack
from tests.support.aws_synth import cfn_lint_errors, synth_checked

THING_VARIABLE = "${iot:Connection.Thing.ThingName}"
ENV = cdk.Environment(account="123456789012", region="eu-west-1")


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[IotRemoteAccessStack, Template, Path]:
    """The reference stack with default settings, synthesized with every check on."""
    stack, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", env=ENV), tmp_path_factory.mktemp("ref")
    )
    assert isinstance(stack, IotRemoteAccessStack)
    return stack, template, template_file


@pytest.fixture(scope="module")
def variant(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[IotRemoteAccessStack, Template, Path]:
    """Custom topics, an allowlist, IoT logging managed elsewhere, an existing alarm topic,
    an extra log group to export, and device-policy switches turned on AFTER the
    monitoring was built (as the tunneling, rotation and jobs constructs do)."""
    settings = FleetSettings.parse(
        {
            "telemetryTopic": "fleet/{thing}/up",
            "commandsTopic": "fleet/{thing}/down",
            "monitoring": {
                "allowedSourceCidrs": ["198.51.100.0/24"],
                "configureIotLogging": False,
                "exemptClientIdPattern": "backend-.*",
                "siemRetentionDays": 30,
                "maxTelemetryPerDevicePerMinute": 120,
            },
        }
    )

    def build(app: cdk.App) -> cdk.Stack:
        stack = IotRemoteAccessStack(app, "Variant", settings=settings, env=ENV)
        stack.device_policy.enable_tunneling()
        stack.device_policy.enable_rotation()
        stack.device_policy.enable_jobs("fw-1")
        audit = logs.LogGroup(stack, "TunnelAudit", retention=logs.RetentionDays.ONE_YEAR)
        assert stack.security_monitoring is not None
        stack.security_monitoring.export_log_group(audit)
        return stack

    stack, template, template_file = synth_checked(build, tmp_path_factory.mktemp("variant"))
    assert isinstance(stack, IotRemoteAccessStack)
    return stack, template, template_file


def _resources(
    template: Template, kind: str, props: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    return [r.get("Properties", {}) for r in found.values()]


def _lambda_environment(template: Template, variable: str) -> Any:
    (props,) = _resources(
        template,
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({variable: Match.any_value()})}},
    )
    return props["Environment"]["Variables"][variable]


# -- checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["reference", "variant"])
def test_stacks_pass_cdk_nag_guard_and_cfn_lint(which: str, request: pytest.FixtureRequest) -> None:
    """synth_checked already raised on any cdk-nag or guard finding; cfn-lint here."""
    _, _, template_file = request.getfixturevalue(which)
    assert cfn_lint_errors(template_file) == []


# -- AWS IoT logging ---------------------------------------------------------------------


def test_iot_logging_is_on_into_an_encrypted_log_group_with_retention(reference: Any) -> None:
    _, template, _ = reference
    template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": "AWSIotLogsV2",
            "RetentionInDays": 365,
            "KmsKeyId": {"Fn::GetAtt": [Match.string_like_regexp("SecurityMonitoringKey"), "Arn"]},
        },
    )
    template.has_resource_properties(
        "AWS::IoT::Logging",
        {
            "AccountId": "123456789012",
            "DefaultLogLevel": "ERROR",
            "RoleArn": {"Fn::GetAtt": [Match.string_like_regexp("IotLoggingRole"), "Arn"]},
        },
    )
    # The logging role writes to AWSIotLogsV2 only.
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": Match.string_like_regexp("IotLoggingRole")}],
            "PolicyDocument": {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "logs:CreateLogGroup",
                            "logs:CreateLogStream",
                            "logs:PutLogEvents",
                        ],
                        "Resource": {
                            "Fn::GetAtt": [Match.string_like_regexp("IotLoggingLogGroup"), "Arn"]
                        },
                    }
                ]
            },
        },
    )
    (role,) = _resources(
        template, "AWS::IAM::Role", {"Description": "AWS IoT v2 logging into AWSIotLogsV2 only"}
    )
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "iot.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert string_alternatives(trust["Condition"]["ArnLike"]["aws:SourceArn"]) == [
        "arn:aws:iot:eu-west-1:123456789012:*"
    ]


def test_iot_logging_managed_elsewhere_uses_the_existing_log_group(variant: Any) -> None:
    _, template, _ = variant
    template.resource_count_is("AWS::IoT::Logging", 0)
    assert _resources(template, "AWS::Logs::LogGroup", {"LogGroupName": "AWSIotLogsV2"}) == []
    template.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {"LogGroupName": "AWSIotLogsV2", "FilterPattern": AUTHORIZATION_FAILURE_FILTER_PATTERN},
    )


# -- IoT rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "invokes_detector"),
    [
        ("SELECT * FROM '$aws/events/presence/connected/+'", True),
        ("SELECT * FROM '$aws/events/presence/disconnected/+'", False),
        ("SELECT * FROM '$aws/events/presence/connect_failed/+'", False),
        ("SELECT * FROM '$aws/events/subscriptions/subscribed/+'", True),
        ("SELECT topic(2) AS thingName FROM 'dt/+/telemetry'", False),
    ],
)
def test_topic_rules_and_their_actions(reference: Any, sql: str, invokes_detector: bool) -> None:
    _, template, _ = reference
    (rule,) = _resources(
        template, "AWS::IoT::TopicRule", {"TopicRulePayload": Match.object_like({"Sql": sql})}
    )
    payload = rule["TopicRulePayload"]
    assert payload["AwsIotSqlVersion"] == "2016-03-23"  # keeps the topics array
    kinds = [next(iter(action)) for action in payload["Actions"]]
    assert kinds == (["CloudwatchLogs", "Lambda"] if invokes_detector else ["CloudwatchLogs"])
    assert "CloudwatchLogs" in payload["ErrorAction"]
    if invokes_detector:
        assert payload["Actions"][1]["Lambda"]["FunctionArn"]["Fn::GetAtt"][0].startswith(
            "SecurityMonitoringDetectorFunction"
        )


def test_each_rule_role_is_assumable_by_its_own_rule_only_and_writes_two_log_groups(
    reference: Any,
) -> None:
    _, template, _ = reference
    rules = _resources(template, "AWS::IoT::TopicRule")
    assert len(rules) == 5
    roles = template.find_resources("AWS::IAM::Role")
    policies = _resources(template, "AWS::IAM::Policy")
    for rule in rules:
        role_id = rule["TopicRulePayload"]["ErrorAction"]["CloudwatchLogs"]["RoleArn"][
            "Fn::GetAtt"
        ][0]
        (statement,) = roles[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "iot.amazonaws.com"}
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
        source_arn = string_alternatives(statement["Condition"]["ArnEquals"]["aws:SourceArn"])[0]
        assert source_arn == f"arn:aws:iot:eu-west-1:123456789012:rule/{rule['RuleName']}"
        (policy,) = [p for p in policies if p["Roles"] == [{"Ref": role_id}]]
        grants = policy["PolicyDocument"]["Statement"]
        assert {tuple(g["Action"]) for g in grants} == {
            ("logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")
        }
        targets = {g["Resource"]["Fn::GetAtt"][0] for g in grants}
        assert len(targets) == 2 and any(
            t.startswith("SecurityMonitoringRuleErrors") for t in targets
        )


def test_detector_may_be_invoked_by_its_two_rules_only(reference: Any) -> None:
    _, template, _ = reference
    permissions = _resources(
        template, "AWS::Lambda::Permission", {"Principal": "iot.amazonaws.com"}
    )
    assert len(permissions) == 2
    for permission in permissions:
        assert permission["SourceAccount"] == "123456789012"
        assert "rule/Ref_SecurityMonitoring_" in string_alternatives(permission["SourceArn"])[0]


# -- detections: functions, filters, metrics, alarms ------------------------------------------------


def test_authorization_failures_stream_from_the_iot_log_to_the_detector(reference: Any) -> None:
    _, template, _ = reference
    template.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {
            "LogGroupName": {"Ref": Match.string_like_regexp("IotLoggingLogGroup")},
            "FilterPattern": AUTHORIZATION_FAILURE_FILTER_PATTERN,
            "DestinationArn": {"Fn::GetAtt": [Match.string_like_regexp("DetectorFunction"), "Arn"]},
        },
    )


def test_functions_may_put_security_events_only(reference: Any) -> None:
    _, template, _ = reference
    statement = Match.object_like(
        {
            "Action": "events:PutEvents",
            "Condition": {"StringEquals": {"events:source": "iot-remote-access.security"}},
            "Resource": {
                "Fn::Join": [
                    "",
                    Match.array_with(
                        [
                            Match.string_like_regexp(
                                r":events:eu-west-1:123456789012:event-bus/default$"
                            )
                        ]
                    ),
                ]
            },
        }
    )
    policies = _resources(
        template,
        "AWS::IAM::Policy",
        {"PolicyDocument": {"Statement": Match.array_with([statement])}},
    )
    assert len(policies) == 2
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "cloudwatch:GetInsightRuleReport",
                                "Resource": Match.array_with(
                                    [
                                        {
                                            "Fn::Join": [
                                                "",
                                                Match.array_with(
                                                    [
                                                        ":cloudwatch:eu-west-1:123456789012:insight-rule/"
                                                        "Ref-SecurityMonitoring-196FB076-TopTelemetryPublishers"
                                                    ]
                                                ),
                                            ]
                                        }
                                    ]
                                ),
                            }
                        )
                    ]
                )
            }
        },
    )


def test_detector_configuration_matches_the_settings(reference: Any) -> None:
    stack, template, _ = reference
    config = DetectionConfig.from_json(_lambda_environment(template, "DETECTION_CONFIG"))
    assert config.access == stack.device_policy.access
    assert config.allowed_networks == ()


def test_alarms_fleet_wide_with_incident_hook_for_high_severity(reference: Any) -> None:
    _, template, _ = reference
    alarm_topic = {"Ref": Match.string_like_regexp("SecurityMonitoringAlarmsTopic")}
    incident_topic = {"Ref": Match.string_like_regexp("SecurityMonitoringIncidentsTopic")}
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "IotRemoteAccess/Security",
            "MetricName": "AuthorizationFailures",
            "Statistic": "Sum",
            "Period": 300,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Dimensions": Match.absent(),
            "AlarmActions": [alarm_topic],
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "UnexpectedSubscriptions",
            "AlarmActions": [alarm_topic, incident_topic],
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "ComparisonOperator": "GreaterThanUpperThreshold",
            "ThresholdMetricId": "expr_1",
            "Metrics": Match.array_with(
                [
                    Match.object_like({"Expression": "ANOMALY_DETECTION_BAND(m0, 3)"}),
                    Match.object_like(
                        {
                            "MetricStat": {
                                "Metric": {
                                    "MetricName": "TelemetryMessages",
                                    "Namespace": "IotRemoteAccess/Security",
                                },
                                "Period": 300,
                                "Stat": "Sum",
                            }
                        }
                    ),
                ]
            ),
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Threshold": 60,
            "Metrics": [
                Match.object_like(
                    {
                        "Expression": "INSIGHT_RULE_METRIC('Ref-SecurityMonitoring-196FB076-TopTelemetryPublishers', "
                        "'MaxContributorValue')",
                        "Period": 60,
                    }
                )
            ],
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Threshold": 5,
            "Metrics": [
                Match.object_like(
                    {
                        "Expression": "INSIGHT_RULE_METRIC('Ref-SecurityMonitoring-196FB076-TopReconnectingDevices', "
                        "'MaxContributorValue')",
                        "Period": 300,
                    }
                )
            ],
        },
    )
    # Without an allowlist the connection-source detection (and its alarm) is off.
    assert (
        _resources(
            template, "AWS::CloudWatch::Alarm", {"MetricName": "ConnectionsOutsideAllowlist"}
        )
        == []
    )
    # This construct's alarms only: the reference stack also holds TunnelAlarms'.
    assert (
        len(
            template.find_resources(
                "AWS::CloudWatch::Alarm",
                {"Properties": {"AlarmActions": Match.array_with([alarm_topic])}},
            )
        )
        == 5
    )


def test_allowlist_adds_the_connection_source_alarm(variant: Any) -> None:
    _, template, _ = variant
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ConnectionsOutsideAllowlist",
            "AlarmActions": [
                Match.any_value(),
                {"Ref": Match.string_like_regexp("IncidentsTopic")},
            ],
        },
    )
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"Threshold": 120})
    config = DetectionConfig.from_json(_lambda_environment(template, "DETECTION_CONFIG"))
    assert [str(n) for n in config.allowed_networks] == ["198.51.100.0/24"]
    assert config.is_exempt("backend-1") and not config.is_exempt("sensor-1")


def test_insight_rules_count_per_device(reference: Any) -> None:
    _, template, _ = reference
    bodies = {}
    for props in _resources(template, "AWS::CloudWatch::InsightRule"):
        assert props["RuleState"] == "ENABLED"
        parts = props["RuleBody"]["Fn::Join"][1]
        body = json.loads("".join(p if isinstance(p, str) else "log-group-ref" for p in parts))
        bodies[props["RuleName"].rsplit("-", 1)[-1]] = body
    assert bodies["TopTelemetryPublishers"]["Contribution"] == {"Keys": ["$.thingName"]}
    assert bodies["TopReconnectingDevices"]["Contribution"] == {
        "Keys": ["$.clientId"],
        "Filters": [{"Match": "$.eventType", "In": ["connected"]}],
    }
    for body in bodies.values():
        assert body["AggregateOn"] == "Count" and body["LogFormat"] == "JSON"
    template.has_resource_properties(
        "AWS::Logs::MetricFilter",
        {
            "FilterPattern": "{ $.thingName = * }",
            "MetricTransformations": [
                {
                    "MetricName": "TelemetryMessages",
                    "MetricNamespace": "IotRemoteAccess/Security",
                    "MetricValue": "1",
                    "Unit": "Count",
                }
            ],
        },
    )


def test_rate_alarm_state_changes_become_security_events(reference: Any) -> None:
    _, template, _ = reference
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "detail": {"state": {"value": ["ALARM"]}},
                "resources": Match.array_with(
                    [{"Fn::GetAtt": [Match.string_like_regexp("ChurnAlarm"), "Arn"]}]
                ),
            }
        },
    )
    routes_json = _lambda_environment(template, "ALARM_ROUTES")
    text = "".join(
        p if isinstance(p, str) else "arn:" + p["Fn::GetAtt"][0] for p in routes_json["Fn::Join"][1]
    )
    routes = parse_alarm_routes(text)
    assert sorted(r.detection.value for r in routes.values()) == [
        "connection-churn",
        "publish-rate-anomaly",
        "publish-rate-top-device",
    ]


# -- SIEM export ------------------------------------------------------------------------------


def test_firehose_stream_decompresses_and_partitions_by_date(reference: Any) -> None:
    _, template, _ = reference
    template.has_resource_properties(
        "AWS::KinesisFirehose::DeliveryStream",
        {
            "DeliveryStreamType": "DirectPut",
            "DeliveryStreamEncryptionConfigurationInput": {
                "KeyType": "CUSTOMER_MANAGED_CMK",
                "KeyARN": Match.any_value(),
            },
            "ExtendedS3DestinationConfiguration": Match.object_like(
                {
                    "Prefix": "logs/!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/",
                    "ErrorOutputPrefix": Match.string_like_regexp(
                        r"^errors/!\{firehose:error-output-type\}/"
                    ),
                    "CompressionFormat": "GZIP",
                    "EncryptionConfiguration": {
                        "KMSEncryptionConfig": {"AWSKMSKeyARN": Match.any_value()}
                    },
                    "ProcessingConfiguration": {
                        "Enabled": True,
                        "Processors": [
                            {
                                "Type": "Decompression",
                                "Parameters": [
                                    {"ParameterName": "CompressionFormat", "ParameterValue": "GZIP"}
                                ],
                            },
                            {"Type": "AppendDelimiterToRecord"},
                        ],
                    },
                    "CloudWatchLoggingOptions": Match.object_like({"Enabled": True}),
                }
            ),
        },
    )


def test_delivery_role_has_exactly_firehoses_s3_actions(reference: Any) -> None:
    _, template, _ = reference
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": Match.string_like_regexp("SiemExportDeliveryRole")}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": [
                                    "s3:AbortMultipartUpload",
                                    "s3:GetBucketLocation",
                                    "s3:GetObject",
                                    "s3:ListBucket",
                                    "s3:ListBucketMultipartUploads",
                                    "s3:PutObject",
                                ],
                            }
                        ),
                        Match.object_like(
                            {
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                                "Condition": {
                                    "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
                                },
                            }
                        ),
                    ]
                )
            },
        },
    )
    (policy,) = _resources(
        template,
        "AWS::IAM::Policy",
        {"Roles": [{"Ref": Match.string_like_regexp("SiemExportDeliveryRole")}]},
    )
    actions = [
        a
        for st in policy["PolicyDocument"]["Statement"]
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    ]
    assert not any("*" in a or "Delete" in a for a in actions), actions


def test_export_bucket_is_encrypted_private_tls_only_with_lifecycle(reference: Any) -> None:
    _, template, _ = reference
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": Match.any_value(),
                        },
                    }
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "siem-bucket/"}),
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {
                            "ExpirationInDays": 400,
                            "Status": "Enabled",
                            "Transitions": [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}],
                        }
                    )
                ]
            },
        },
    )
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
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
                                "Effect": "Deny",
                                "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}},
                            }
                        ),
                    ]
                )
            }
        },
    )


def test_iot_lifecycle_trail_and_tunnel_audit_logs_stream_into_the_export(reference: Any) -> None:
    _, template, _ = reference
    exports = _resources(
        template,
        "AWS::Logs::SubscriptionFilter",
        {"DestinationArn": {"Fn::GetAtt": [Match.string_like_regexp("SiemExportStream"), "Arn"]}},
    )
    exported = sorted(e["LogGroupName"]["Ref"] for e in exports)
    prefixes = [
        "AuditTrailLogs",
        "SecureTunnelingBrokerLogs",
        "SecureTunnelingSweeperLogs",
        "SecurityMonitoringIotLoggingLogGroup",
        "SecurityMonitoringLifecycleEvents",
    ]
    assert len(exported) == len(prefixes)
    for group, prefix in zip(exported, prefixes, strict=True):
        assert group.startswith(prefix)
    assert {e["FilterPattern"] for e in exports} == {""}
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "logs.amazonaws.com"},
                            "Condition": Match.object_like(
                                {"StringEquals": {"aws:SourceAccount": "123456789012"}}
                            ),
                        }
                    )
                ]
            }
        },
    )


def test_extra_log_groups_are_exported_and_short_retention_skips_cold_storage(variant: Any) -> None:
    _, template, _ = variant
    template.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {"LogGroupName": {"Ref": Match.string_like_regexp("^TunnelAudit")}, "FilterPattern": ""},
    )
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like({"ExpirationInDays": 30, "Transitions": Match.absent()})
                ]
            },
            "VersioningConfiguration": {"Status": "Enabled"},
        },
    )


# -- the topic check agrees with the device policy --------------------------------------------------


def _policy_subscribe_filters(template: Template) -> list[str]:
    (policy,) = _resources(template, "AWS::IoT::Policy")
    (statement,) = [
        s for s in policy["PolicyDocument"]["Statement"] if "iot:Subscribe" in s["Action"]
    ]
    filters = []
    for resource in statement["Resource"]:
        arn = string_alternatives(resource)[0]
        if ":topicfilter/" in arn:  # Subscribe and Receive share the statement
            filters.append(arn.split(":topicfilter/", 1)[1])
    return filters


def _iam_matches(pattern: str, value: str) -> bool:
    """IAM resource matching: '*' any characters ('/' too), '?' one, the rest literal."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def test_subscription_check_agrees_with_the_device_policy(variant: Any) -> None:
    """Same settings, same model: the synthesized IoT policy and the detector's check
    allow exactly the same subscriptions, including switches turned on after the
    monitoring was built."""
    stack, template, _ = variant
    config = DetectionConfig.from_json(_lambda_environment(template, "DETECTION_CONFIG"))
    access = stack.device_policy.access
    assert config.access == access
    assert access.tunneling and access.rotation and access.job_ids == ("fw-1",)

    policy_filters = _policy_subscribe_filters(template)
    things = ["sensor-1", "sensor-2"]
    candidates = {
        grant.render(t)
        for grant in DeviceAccess(
            topics=access.topics,
            tunneling=True,
            rotation=True,
            jobs=True,
            job_ids=("fw-1", "fw-2"),
        ).grants()
        for t in things
    }
    candidates |= {
        "fleet/+/down",
        "fleet/#",
        "#",
        "$aws/things/sensor-1/shadow/update",
        "$aws/things/+/tunnels/notify",
        # Jobs answers fold into the own thing's jobs/* (docs/topics-v2.md): the
        # detector allows what the policy allows there, and nothing of another thing.
        "$aws/things/sensor-1/jobs/#",
        "$aws/things/sensor-1/jobs/fw-9/update/accepted",
        "$aws/things/sensor-2/jobs/+/update/accepted",
    }
    checked = {True: 0, False: 0}
    for thing in things:
        allowed_by_policy = {f.replace(THING_VARIABLE, thing) for f in policy_filters}
        for topic in sorted(candidates):
            by_policy = any(_iam_matches(f, topic) for f in allowed_by_policy)
            assert config.access.allows(Access.SUBSCRIBE, thing, topic) is by_policy, (thing, topic)
            checked[by_policy] += 1
        findings = evaluate_lifecycle_event(
            {
                "clientId": thing,
                "eventType": "subscribed",
                "timestamp": 1460065214626,
                "topics": sorted(candidates),
            },
            config,
        )
        refused = {t for t in candidates if not any(_iam_matches(f, t) for f in allowed_by_policy)}
        assert set(findings[0].evidence["topics"]) == refused
    assert checked[True] >= 10 and checked[False] >= 20  # both outcomes really exercised


# -- the construct on its own, and bad input -------------------------------------------------------


def test_monitoring_can_be_turned_off(tmp_path: Path) -> None:
    settings = FleetSettings.parse({"monitoring": {"enabled": False}})
    stack, template, _ = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Off", settings=settings, env=ENV), tmp_path
    )
    assert stack.security_monitoring is None  # type: ignore[attr-defined]
    template.resource_count_is("AWS::IoT::TopicRule", 0)
    template.resource_count_is("AWS::IoT::Logging", 0)


def test_existing_topics_and_no_export(tmp_path: Path) -> None:
    def build(app: cdk.App) -> cdk.Stack:
        stack = cdk.Stack(app, "Own", env=ENV)
        topic = sns.Topic.from_topic_arn(stack, "Ops", "arn:aws:sns:eu-west-1:123456789012:ops")
        SecurityMonitoring(
            stack,
            "Monitoring",
            device_access=DeviceAccess(),
            alarm_topic=topic,
            incident_topic=topic,
            settings=FleetSettings.parse({"monitoring": {"siemExport": False}}).monitoring,
        )
        return stack

    app = cdk.App(outdir=str(tmp_path))
    stack = build(app)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SNS::Topic", 0)
    template.resource_count_is("AWS::KinesisFirehose::DeliveryStream", 0)
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "UnexpectedSubscriptions",
            "AlarmActions": [
                "arn:aws:sns:eu-west-1:123456789012:ops",
                "arn:aws:sns:eu-west-1:123456789012:ops",
            ],
        },
    )
    monitoring = stack.node.find_child("Monitoring")
    assert isinstance(monitoring, SecurityMonitoring)
    with pytest.raises(ValueError, match=r"^log_group: SIEM export is off"):
        monitoring.export_log_group(logs.LogGroup(stack, "Extra"))


def test_a_log_group_is_exported_once() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    group = logs.LogGroup(stack, "Audit")
    export = SiemExport(stack, "Export", log_groups=[group])
    with pytest.raises(ValueError, match=r"^log_group: 'S/Audit' is already exported"):
        export.add_log_group(group)
    with pytest.raises(ValueError, match=r"^retention_days: 0 is below 1"):
        SiemExport(stack, "Export2", retention_days=0)


def test_bad_construct_input_is_refused() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    errors = logs.LogGroup(stack, "Errors")
    with pytest.raises(ValueError, match=r"^log_group, function: both are None"):
        SecurityTopicRule(
            stack, "R1", sql="SELECT * FROM 'a'", description="d", error_log_group=errors
        )
    with pytest.raises(ValueError, match=r"^rule_name: 'my-rule' is not an IoT rule name"):
        SecurityTopicRule(
            stack,
            "R2",
            sql="SELECT * FROM 'a'",
            description="d",
            error_log_group=errors,
            log_group=errors,
            rule_name="my-rule",
        )
    with pytest.raises(ValueError, match=r"^level: 'TRACE' is not an AWS IoT log level"):
        IotLogging(stack, "Logging", level="TRACE")


def test_too_many_cidr_ranges_for_the_lambda_environment_are_refused() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    cidrs = [f"10.{i // 256}.{i % 256}.0/24" for i in range(300)]
    settings = FleetSettings.parse({"monitoring": {"allowedSourceCidrs": cidrs}}).monitoring
    with pytest.raises(
        ValueError,
        match=r"^allowedSourceCidrs: 300 ranges make the detector's "
        r"configuration \d+ bytes; Lambda allows 4 KB",
    ):
        SecurityMonitoring(stack, "M", device_access=DeviceAccess(), settings=settings)


def test_siem_export_on_its_own_passes_cdk_nag_and_cfn_lint(tmp_path: Path) -> None:
    def build(app: cdk.App) -> cdk.Stack:
        stack = cdk.Stack(app, "Export", env=ENV)
        trail = logs.LogGroup(stack, "CloudTrail", retention=logs.RetentionDays.ONE_YEAR)
        SiemExport(stack, "Siem", log_groups=[trail])
        cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks(stack))
        return stack

    _, template, template_file = synth_checked(build, tmp_path)
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "AllowCloudWatchLogsForThisAccountsLogGroups",
                                "Principal": {"Service": "logs.eu-west-1.amazonaws.com"},
                            }
                        )
                    ]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {"LogGroupName": {"Ref": Match.string_like_regexp("^CloudTrail")}},
    )
    assert cfn_lint_errors(template_file) == []
