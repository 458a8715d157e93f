"""IncidentClocks synthesized: what starts the clocks, who may touch which partition,
where alarms go, and that each function's asset imports with only what it holds."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from iot_remote_access.constructs.aws import AccessLedger, IncidentClocks
from iot_remote_access.constructs.aws.library_function import stage_handler_code

ENV = cdk.Environment(account="123456789012", region="eu-west-1")


def _template(**kwargs: Any) -> Template:
    stack = cdk.Stack(cdk.App(), "Evidence", env=ENV)
    ledger = AccessLedger(stack, "Ledger", ledger_id="fleet")
    topic = sns.Topic(stack, "Alarms")
    IncidentClocks(stack, "Incidents", ledger=ledger, alarm_topic=topic, **kwargs)
    return Template.from_stack(stack)


def _statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if any(r["Ref"].startswith(role_prefix) for r in policy["Properties"]["Roles"]):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_high_findings_start_the_clocks_and_a_schedule_checks_them() -> None:
    template = _template(check_interval=cdk.Duration.minutes(10))
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["iot-remote-access.security"],
                "detail-type": ["IoT Security Finding"],
                "detail": {"severity": ["high"]},
            }
        },
    )
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(10 minutes)"}
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmActions": [{"Ref": Match.string_like_regexp("Alarms")}], "Threshold": 0},
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {"LEDGER_ID": "fleet", "ALARM_TOPIC_ARN": Match.any_value()}
                )
            }
        },
    )


def test_each_function_reaches_only_the_chain_and_the_incidents_partition() -> None:
    template = _template()
    for role, extra in (
        ("IncidentsOpener", "dynamodb:PutItem"),
        ("IncidentsChecker", "dynamodb:UpdateItem"),
    ):
        statements = _statements(template, role)
        dynamodb = [s for s in statements if str(s["Action"]).count("dynamodb:")]
        partitions = sorted(
            key
            for s in dynamodb
            for key in s["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
        )
        assert partitions == ["fleet", "fleet#incidents"], role
        actions = {
            a
            for s in dynamodb
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        assert actions == {"dynamodb:Query", "dynamodb:PutItem", extra}
        assert not any("Delete" in a for a in actions)
    publish = [s for s in _statements(template, "IncidentsChecker") if s["Action"] == "sns:Publish"]
    assert len(publish) == 1
    assert not [s for s in _statements(template, "IncidentsOpener") if s["Action"] == "sns:Publish"]


@pytest.mark.parametrize("minutes", [1, 4, 361])
def test_a_check_interval_out_of_range_is_refused(minutes: int) -> None:
    with pytest.raises(
        ValueError, match=rf"check_interval: {minutes} minutes is not allowed; allowed: 5 to 360"
    ):
        _template(check_interval=cdk.Duration.minutes(minutes))


@pytest.mark.parametrize("package", ["incident_open", "incident_check"])
def test_the_staged_handlers_import_with_only_what_the_asset_holds(package: str) -> None:
    staged = stage_handler_code(package, ["ledger", "incidents"])
    probe = f"import iot_remote_access, iot_remote_access.lambdas.{package}.handler as h; print(iot_remote_access.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=staged,
        env={**os.environ, "PYTHONPATH": str(staged), "AWS_DEFAULT_REGION": "eu-west-1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(staged))
