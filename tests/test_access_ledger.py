"""AccessLedger in a user-style stack: Object Lock, conditional chain table, anchor schedule;
cdk-nag AwsSolutions and cfn-lint clean; the anchor code asset holds what the handler imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from iot_remote_access.constructs.aws.access_ledger import AccessLedger
from iot_remote_access.constructs.aws.library_function import stage_handler_code
from tests.support.aws_synth import cfn_lint_errors, synth_checked

ENV = cdk.Environment(account="123456789012", region="eu-west-1")


def _stack(app: cdk.App, **kwargs: Any) -> cdk.Stack:
    stack = cdk.Stack(app, "Ledger", env=ENV)
    ledger = AccessLedger(stack, "Ledger", **kwargs)
    # A writer as the lead will wire it: a role of the user's (the broker's role in the stack).
    writer = iam.Role(stack, "Writer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    ledger.grant_append(writer)
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks(stack))
    return stack


def _statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    found: list[dict[str, Any]] = []
    for policy in policies.values():
        roles = policy["Properties"]["Roles"]
        if any(r["Ref"].startswith(role_prefix) for r in roles):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


def test_ledger_synthesizes_nag_and_lint_clean_with_compliance_lock(tmp_path: Path) -> None:
    _, template, template_file = synth_checked(
        lambda app: _stack(app, retention_days=730, anchor_interval_minutes=30), tmp_path
    )
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "ObjectLockEnabled": True,
            "ObjectLockConfiguration": {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 730}},
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    Match.object_like(
                        {
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": Match.any_value(),
                            },
                            "BucketKeyEnabled": True,
                        }
                    )
                ]
            },
            "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicPolicy": True}),
            "LifecycleConfiguration": {
                "Rules": [Match.object_like({"ExpirationInDays": 761, "Status": "Enabled"})]
            },
        },
    )
    bucket_policy = template.find_resources("AWS::S3::BucketPolicy")
    (policy,) = bucket_policy.values()
    conditions = [
        s.get("Condition", {}) for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
    assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions
    (only_anchor,) = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "OnlyTheAnchorFunctionWritesAnchors"
    ]
    assert (only_anchor["Effect"], only_anchor["Action"], only_anchor["Principal"]) == (
        "Deny",
        "s3:PutObject",
        {"AWS": "*"},
    )
    assert only_anchor["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]["Fn::GetAtt"][0].startswith(
        "LedgerAnchorRole"
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": "ledger", "KeyType": "HASH"},
                {"AttributeName": "seq", "KeyType": "RANGE"},
            ],
            "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "DeletionProtectionEnabled": True,
            "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
        },
    )
    template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(30 minutes)"}
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "iot_remote_access.lambdas.ledger_anchor.handler.handler",
            "ReservedConcurrentExecutions": 1,
            "Timeout": 300,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "LEDGER_ID": "access",
                        "LEDGER_RETENTION_DAYS": "730",
                        "LEDGER_TABLE": {"Ref": Match.string_like_regexp("LedgerRecords")},
                        "ANCHOR_BUCKET": {"Ref": Match.string_like_regexp("LedgerAnchors")},
                    }
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"Threshold": 0, "TreatMissingData": "notBreaching"}
    )
    assert cfn_lint_errors(template_file) == []


def test_writers_may_only_query_and_put_on_their_own_partition(tmp_path: Path) -> None:
    _, template, _ = synth_checked(_stack, tmp_path)
    statements = _statements(template, "Writer")
    (dynamo,) = [s for s in statements if "dynamodb:PutItem" in s["Action"]]
    assert dynamo["Action"] == ["dynamodb:Query", "dynamodb:PutItem"]
    assert dynamo["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["access"]}
    }
    assert dynamo["Resource"]["Fn::GetAtt"][0].startswith("LedgerRecords")
    every_action = _actions(statements)
    assert not {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "s3:DeleteObject"} & every_action
    anchor_actions = _actions(_statements(template, "LedgerAnchorRole"))
    assert {"s3:PutObject", "s3:GetObject", "s3:ListBucket", "dynamodb:Query"} <= anchor_actions
    assert not {"dynamodb:PutItem", "dynamodb:DeleteItem", "s3:DeleteObject"} & anchor_actions


def test_alarm_goes_to_the_given_topic(tmp_path: Path) -> None:
    def build(app: cdk.App) -> cdk.Stack:
        stack = cdk.Stack(app, "Ledger", env=ENV)
        topic = sns.Topic(stack, "Alarms", enforce_ssl=True, master_key=None)
        AccessLedger(stack, "Ledger", alarm_topic=topic)
        return stack

    app = cdk.App(outdir=str(tmp_path))
    template = Template.from_stack(build(app))
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmActions": [{"Ref": Match.string_like_regexp("Alarms")}]},
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"retention_days": 365},
            r"retention_days: 365 is not allowed; allowed: .* from 366 \(the legal minimum",
        ),
        ({"retention_days": 10_000}, r"retention_days: 10000 .* to 3650"),
        (
            {"anchor_interval_minutes": 1},
            r"anchor_interval_minutes: 1 is not allowed; allowed: whole minutes from 5",
        ),
        ({"ledger_id": "Access Log"}, r"ledger_id: 'Access Log' is not allowed"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AccessLedger(cdk.Stack(cdk.App(), "S", env=ENV), "Ledger", **kwargs)


def test_a_wrong_type_is_a_type_error_naming_the_field() -> None:
    with pytest.raises(TypeError, match=r"^AccessLedger retention_days: got str '400'"):
        AccessLedger(cdk.Stack(cdk.App(), "S", env=ENV), "Ledger", retention_days="400")  # type: ignore[arg-type]


def test_anchor_asset_holds_the_handler_the_shared_ledger_package_and_core() -> None:
    staged = stage_handler_code("ledger_anchor", ["ledger"]) / "iot_remote_access"
    assert (staged / "lambdas" / "ledger_anchor" / "handler.py").is_file()
    assert (staged / "lambdas" / "ledger" / "store.py").is_file()
    assert (staged / "lambdas" / "ledger" / "anchors.py").is_file()
    assert (staged / "core" / "ledger_verify.py").is_file()


def test_the_staged_anchor_handler_imports_with_only_what_the_asset_holds(tmp_path: Path) -> None:
    # As Lambda would load it: the asset folder first on the path, boto3 and Powertools
    # from the environment (the runtime and the layer), nothing else of this package.
    staged = stage_handler_code("ledger_anchor", ["ledger"])
    probe = (
        "import iot_remote_access, iot_remote_access.lambdas.ledger_anchor.handler as h;"
        "print(iot_remote_access.__file__); print(h.anchor.__name__)"
    )
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
    module_file, name = result.stdout.split()
    assert module_file.startswith(str(staged)) and name == "anchor"


@pytest.mark.parametrize("env", [None, ENV], ids=["no-env", "pinned-env"])
def test_a_platform_stack_with_its_own_key_and_topic_is_nag_clean(
    tmp_path: Path, env: cdk.Environment | None
) -> None:
    # How a platform team adds it: their key, their alert topic, a writer role of theirs.
    def build(app: cdk.App) -> cdk.Stack:
        stack = cdk.Stack(app, "Platform", env=env)
        key = kms.Key(stack, "PlatformKey", enable_key_rotation=True)
        alerts = sns.Topic(stack, "PlatformAlerts", master_key=key, enforce_ssl=True)
        ledger = AccessLedger(stack, "Ledger", key=key, alarm_topic=alerts, ledger_id="plant-7")
        writer = iam.Role(stack, "Writer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        ledger.grant_append(writer)
        cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks(stack))
        return stack

    _, template, template_file = synth_checked(build, tmp_path)
    assert template.find_resources("AWS::KMS::Key").keys() == {
        k for k in template.find_resources("AWS::KMS::Key") if k.startswith("PlatformKey")
    }
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"LEDGER_ID": "plant-7"})}},
    )
    assert cfn_lint_errors(template_file) == []
