"""TunnelAlarms in the reference stack: rule, function, table, alarms, dashboard; nag and lint clean."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from iot_remote_access.constructs.aws import AlarmTopic, TunnelAlarms
from iot_remote_access.constructs.aws.library_function import PACKAGE_ROOT, stage_handler_code
from iot_remote_access.settings import FleetSettings, SettingsError
from iot_remote_access.stacks import IotRemoteAccessStack
from tests.support.aws_synth import cfn_lint_errors, synth_checked

QUERY = 'SELECT {f}({m}) FROM SCHEMA("IotRemoteAccess", ThingName) GROUP BY ThingName ORDER BY {f}() DESC'


def _alarm(template: Template, query: str, threshold: float) -> None:
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Metrics": [
                Match.object_like({"Expression": query, "Period": 300, "ReturnData": True})
            ],
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 1,
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": Match.string_like_regexp("TunnelAlarmsAlarmTopic")}],
            "AlarmDescription": Match.string_like_regexp("describe-alarm-contributors"),
        },
    )


def _dashboard_text(template: Template) -> str:
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return "".join(part for part in parts if isinstance(part, str))


def test_reference_stack_has_rule_function_table_alarms_and_dashboard(tmp_path: Path) -> None:
    _, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref"), tmp_path
    )

    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.iotsecuredtunneling"],
                "detail": {
                    "eventSource": ["iotsecuredtunneling.amazonaws.com"],
                    "eventName": ["OpenTunnel", "CloseTunnel"],
                    "errorCode": [{"exists": False}],
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {
                            "Fn::GetAtt": [
                                Match.string_like_regexp("TunnelAlarmsMetricsFunction"),
                                "Arn",
                            ]
                        },
                        "DeadLetterConfig": Match.object_like({}),
                    }
                )
            ],
        },
    )
    template.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(5 minutes)"})
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "iot_remote_access.lambdas.tunnel_metrics.handler.handler",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "RENEWAL_WINDOW_MINUTES": "15",
                        "POWERTOOLS_METRICS_NAMESPACE": "IotRemoteAccess",
                        "TABLE_NAME": {"Ref": Match.string_like_regexp("TunnelAlarmsState")},
                    }
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "GlobalSecondaryIndexes": [
                Match.object_like(
                    {
                        "IndexName": "OpenTunnels",
                        "KeySchema": [
                            {"AttributeName": "openIndex", "KeyType": "HASH"},
                            {"AttributeName": "expiresAt", "KeyType": "RANGE"},
                        ],
                        "Projection": {
                            "ProjectionType": "INCLUDE",
                            "NonKeyAttributes": ["thingName", "openedAt"],
                        },
                    }
                )
            ],
        },
    )
    # The alarms: thresholds and queries, one multi-time-series alarm per condition.
    _alarm(template, QUERY.format(f="MAX", m="TunnelOpensToday"), 3)
    _alarm(template, QUERY.format(f="SUM", m="TunnelRenewalLoop"), 0)
    _alarm(template, QUERY.format(f="MAX", m="TunnelOpenAge"), 7200)
    for namespace, metric in (
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ):
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "Namespace": namespace,
                "MetricName": metric,
                "Threshold": 1,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "AlarmActions": [{"Ref": Match.string_like_regexp("TunnelAlarmsAlarmTopic")}],
            },
        )
    # All six go to one topic, encrypted with its own customer-managed key.
    ours = template.find_resources(
        "AWS::CloudWatch::Alarm",
        {
            "Properties": {
                "AlarmActions": [{"Ref": Match.string_like_regexp("TunnelAlarmsAlarmTopic")}]
            }
        },
    )
    assert len(ours) == 6
    (topic,) = template.find_resources(
        "AWS::SNS::Topic",
        {
            "Properties": {
                "KmsMasterKeyId": {
                    "Fn::GetAtt": [Match.string_like_regexp("TunnelAlarmsAlarmTopicKey"), "Arn"]
                },
            }
        },
    )
    assert topic.startswith("TunnelAlarmsAlarmTopic")
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    dashboard = _dashboard_text(template)
    for expected in (
        "Tunnel opens per day",
        "Top 10 things by opens per day",
        "Renewal loops",
        "Open durations at close",
        QUERY.format(f="SUM", m="TunnelOpenCount") + " LIMIT 10",
    ):
        assert expected.replace('"', '\\"') in dashboard
    assert cfn_lint_errors(template_file) == []


def _statements(template: Template) -> list[dict[str, Any]]:
    policies = template.find_resources(
        "AWS::IAM::Policy",
        {"Properties": {"Roles": [{"Ref": Match.string_like_regexp("TunnelAlarmsMetricsRole")}]}},
    )
    (policy,) = policies.values()
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def test_function_role_has_exact_grants() -> None:
    stack = cdk.Stack(cdk.App(), "Alone")
    TunnelAlarms(stack, "TunnelAlarms")
    template = Template.from_stack(stack)
    by_sid = {s.get("Sid"): s for s in _statements(template)}
    (table_id,) = template.find_resources("AWS::DynamoDB::Table")

    assert by_sid["TunnelState"]["Action"] == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]  # no DeleteItem: only the dropped Powertools Idempotency deleted items
    assert by_sid["TunnelState"]["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}
    assert by_sid["OpenTunnelsIndex"]["Action"] == "dynamodb:Query"
    assert json.dumps(by_sid["OpenTunnelsIndex"]["Resource"]).endswith('"/index/OpenTunnels"]]}')
    assert by_sid["DescribeTunnels"]["Action"] == "iot:DescribeTunnel"
    assert json.dumps(by_sid["DescribeTunnels"]["Resource"]).endswith(':tunnel/*"]]}')
    actions = json.dumps([s["Action"] for s in by_sid.values()])
    assert "dynamodb:Scan" not in actions and '"dynamodb:*"' not in actions


def test_the_handler_calls_only_the_granted_table_actions() -> None:
    """Every DynamoDB call in the handler's code is one the TunnelState/OpenTunnels grants allow."""
    granted = {"get_item", "put_item", "update_item", "query"}
    called = set()
    for source in (PACKAGE_ROOT / "lambdas" / "tunnel_metrics").glob("*.py"):
        called |= set(re.findall(r"client\.(\w+)\(", source.read_text()))
        called |= set(re.findall(r"get_paginator\(\"(\w+)\"\)", source.read_text()))
    assert called - {"get_paginator", "describe_tunnel"} == granted


def test_settings_set_thresholds_window_and_email(tmp_path: Path) -> None:
    settings = FleetSettings.parse(
        {
            "tunnelAlarms": {
                "maxOpensPerThingPerDay": 5,
                "renewalWindowMinutes": 30,
                "maxOpenHours": 1.5,
                "emailAddresses": ["ops@example.com"],
            }
        }
    )
    # With an explicit environment (ARNs carry the account and region; the cdk-nag
    # acknowledgement must still match).
    env = cdk.Environment(account="123456789012", region="eu-central-1")
    _, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings, env=env), tmp_path
    )
    assert cfn_lint_errors(template_file, regions=("eu-central-1",)) == []

    _alarm(template, QUERY.format(f="MAX", m="TunnelOpensToday"), 5)
    _alarm(template, QUERY.format(f="MAX", m="TunnelOpenAge"), 5400)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"RENEWAL_WINDOW_MINUTES": "30"})}},
    )
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )


def test_disabled_in_settings_adds_nothing() -> None:
    stack = IotRemoteAccessStack(
        cdk.App(),
        "Ref",
        checks=False,
        settings=FleetSettings.parse({"tunnelAlarms": {"enabled": False}}),
    )
    assert stack.tunnel_alarms is None
    template = Template.from_stack(stack)
    assert (
        template.find_resources(
            "AWS::Events::Rule",
            {"Properties": {"EventPattern": {"source": ["aws.iotsecuredtunneling"]}}},
        )
        == {}
    )
    assert template.find_resources("AWS::DynamoDB::Table") == {}


def test_function_log_group_can_use_a_customer_managed_key() -> None:
    stack = cdk.Stack(cdk.App(), "Keyed")
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    TunnelAlarms(stack, "TunnelAlarms", encryption_key=key)
    Template.from_stack(stack).has_resource_properties(
        "AWS::Logs::LogGroup",
        {"KmsKeyId": {"Fn::GetAtt": [Match.string_like_regexp("^Key"), "Arn"]}},
    )


def test_alarms_can_share_a_topic() -> None:
    stack = cdk.Stack(cdk.App(), "Shared")
    shared = AlarmTopic(stack, "Alarms")
    alarms = TunnelAlarms(stack, "TunnelAlarms", alarm_topic=shared)
    assert alarms.alarm_topic is shared.topic
    assert alarms.own_alarm_topic is None
    Template.from_stack(stack).resource_count_is("AWS::SNS::Topic", 1)


def test_alarms_go_to_any_sns_topic_a_team_brings() -> None:
    """Issue 18: a plain ``sns.Topic`` (or an imported one) used to end in AttributeError."""
    stack = cdk.Stack(cdk.App(), "Team")
    topic = sns.Topic(stack, "TeamAlerts")
    imported = sns.Topic.from_topic_arn(
        stack, "Imported", "arn:aws:sns:eu-west-1:123456789012:on-call"
    )
    TunnelAlarms(stack, "TunnelAlarms", alarm_topic=topic)
    TunnelAlarms(stack, "ImportedAlarms", alarm_topic=imported)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SNS::Topic", 1)
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmActions": [{"Ref": Match.string_like_regexp("^TeamAlerts")}]},
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmActions": ["arn:aws:sns:eu-west-1:123456789012:on-call"]},
    )


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (
            {"max_opens_per_thing_per_day": 0},
            r"^max_opens_per_thing_per_day: 0 is not allowed; allowed: a whole number of tunnels from 1 to 1000$",
        ),
        (
            {"renewal_window_minutes": 0},
            r"^renewal_window_minutes: 0 is not allowed; allowed: a whole number of minutes",
        ),
        (
            {"max_open_hours": 24},
            r"^max_open_hours: 24 is not allowed; allowed: hours from 0\.25 to less than 12",
        ),
    ],
)
def test_bad_props_are_refused_at_synth(props: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TunnelAlarms(cdk.Stack(cdk.App(), "S"), "TunnelAlarms", **props)


def test_email_with_a_shared_topic_is_refused() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(
        ValueError, match=r"^email_addresses: \['ops@example\.com'\] given with an alarm_topic"
    ):
        TunnelAlarms(
            stack,
            "TunnelAlarms",
            alarm_topic=AlarmTopic(stack, "A"),
            email_addresses=["ops@example.com"],
        )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"maxOpensPerThingPerDay": 0},
            r"^iot-remote-access\.tunnelAlarms\.maxOpensPerThingPerDay: 0 is not allowed; allowed: a whole number of tunnels from 1 to 1000$",
        ),
        (
            {"renewalWindowMinutes": "15"},
            r"^iot-remote-access\.tunnelAlarms\.renewalWindowMinutes: '15' is not allowed; allowed: a whole number of minutes from 1 to 720$",
        ),
        (
            {"maxOpenHours": 12},
            r"^iot-remote-access\.tunnelAlarms\.maxOpenHours: 12 is not allowed; allowed: hours from 0\.25 to less than 12",
        ),
        (
            {"emailAddresses": ["ops-at-example"]},
            r"^iot-remote-access\.tunnelAlarms\.emailAddresses: 'ops-at-example' is not an e-mail address; allowed: name@example\.com$",
        ),
        (
            {"emailAddresses": "ops@example.com"},
            r"emailAddresses: 'ops@example\.com' is not a list; allowed: a list of e-mail addresses$",
        ),
        (
            {"maxOpens": 3},
            r"^iot-remote-access\.tunnelAlarms\.maxOpens: unknown setting; allowed: enabled, maxOpensPerThingPerDay, renewalWindowMinutes, maxOpenHours, emailAddresses$",
        ),
    ],
)
def test_bad_settings_name_field_value_and_rule(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        FleetSettings.parse({"tunnelAlarms": raw})


def test_settings_defaults() -> None:
    alarms = FleetSettings.parse({}).tunnel_alarms
    assert (
        alarms.enabled,
        alarms.max_opens_per_thing_per_day,
        alarms.renewal_window_minutes,
        alarms.max_open_hours,
        alarms.email_addresses,
    ) == (True, 3, 15, 2.0, ())


def test_handler_asset_is_self_contained(tmp_path: Path) -> None:
    """The staged asset imports with only the Lambda runtime's boto3 and the Powertools layer:
    no settings, pydantic, CDK or constructs."""
    staged = stage_handler_code("tunnel_metrics", ["ledger"])  # as TunnelAlarms stages it
    probe = (
        "import sys, iot_remote_access.lambdas.tunnel_metrics.handler as h;"
        "assert h.__file__.startswith(sys.argv[1]), h.__file__;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pydantic', 'aws_cdk', 'constructs')"
        " or m in ('iot_remote_access.settings', 'iot_remote_access.constructs')];"
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(staged)],
        capture_output=True,
        text=True,
        check=False,
        env={
            "PYTHONPATH": str(staged),
            "PATH": "",
            "TABLE_NAME": "t",
            "AWS_DEFAULT_REGION": "eu-west-1",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
