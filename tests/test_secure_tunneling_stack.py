"""SecureTunneling and AuditTrail in the reference stack: real synth, cdk-nag, guard, cfn-lint."""

from __future__ import annotations

import ast
import fnmatch
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from iot_remote_access.constructs.aws import AuditTrail, DevicePolicy, SecureTunneling
from iot_remote_access.constructs.aws.library_function import PACKAGE_ROOT, stage_handler_code
from iot_remote_access.core.tunnel_rules import TunnelPolicy
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack
from tests.support.aws_synth import cfn_lint_errors, synth_checked

BROKER_HANDLER = "iot_remote_access.lambdas.tunnel_broker.handler.handler"
SWEEPER_HANDLER = "iot_remote_access.lambdas.tunnel_sweeper.handler.handler"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path]:
    _, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref"), tmp_path_factory.mktemp("ref")
    )
    return template, template_file


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path]:
    settings = FleetSettings.parse(
        {
            "thingNamePattern": "sensor-[0-9]+",
            "tunneling": {
                "allowedServices": ["SSH", "VNC"],
                "thingGroups": ["production"],
                "defaultLifetimeMinutes": 30,
                "maxLifetimeMinutes": 240,
                "maxOpenTunnelsPerThing": 2,
                "connectGraceMinutes": 10,
                "sweepIntervalMinutes": 10,
                "auditRetentionDays": 90,
                "operatorRole": True,
            },
        }
    )
    _, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings),
        tmp_path_factory.mktemp("configured"),
    )
    return template, template_file


def _role_of(template: Template, handler: str) -> str:
    (function,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": handler}}
    ).values()
    return str(function["Properties"]["Role"]["Fn::GetAtt"][0])


def _allows(statement: dict[str, Any], action: str) -> bool:
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    return statement["Effect"] == "Allow" and any(
        fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in actions
    )


def _roles_allowed(template: Template, action: str) -> set[str]:
    """Every role any policy in the template allows ``action`` (wildcards included)."""
    roles: set[str] = set()
    for resource in template.to_json()["Resources"].values():
        kind, properties = resource["Type"], resource.get("Properties", {})
        documents: list[tuple[dict[str, Any], list[Any]]] = []
        if kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append((properties["PolicyDocument"], properties.get("Roles", [])))
        if kind == "AWS::IAM::Role":
            me = [
                {"Ref": name}
                for name, r in template.to_json()["Resources"].items()
                if r is resource
            ]
            documents += [(p["PolicyDocument"], me) for p in properties.get("Policies", [])]
        for document, attached in documents:
            statements = document["Statement"]
            assert not any(s["Effect"] == "Allow" and "NotAction" in s for s in statements)
            if any(_allows(s, action) for s in statements):
                roles.update(r["Ref"] for r in attached)
    return roles


def test_reference_stack_deploys_the_whole_flow(reference: tuple[Template, Path]) -> None:
    template, template_file = reference
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": BROKER_HANDLER,
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "TUNNEL_POLICY": Match.string_like_regexp(
                            '"allowed_services":\\["SSH"\\],"default_lifetime_minutes":60,"max_lifetime_minutes":720'
                        )
                    }
                )
            },
        },
    )
    template.has_resource_properties("AWS::Lambda::Url", {"AuthType": "AWS_IAM"})
    template.has_resource_properties("AWS::Lambda::Function", {"Handler": SWEEPER_HANDLER})
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(5 minutes)",
            "Targets": [
                Match.object_like(
                    {"Arn": {"Fn::GetAtt": [Match.string_like_regexp("Sweeper"), "Arn"]}}
                )
            ],
        },
    )
    template.resource_count_is("AWS::CloudTrail::Trail", 1)
    outputs = template.find_outputs("TunnelBrokerUrl")
    assert outputs and "FunctionUrl" in json.dumps(outputs)
    assert cfn_lint_errors(template_file) == []


def test_only_the_broker_role_may_open_tunnels(reference: tuple[Template, Path]) -> None:
    template, _ = reference
    broker_role = _role_of(template, BROKER_HANDLER)
    assert _roles_allowed(template, "iot:OpenTunnel") == {broker_role}
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": broker_role}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "OpenTunnelsForAllowedServicesOnly",
                                "Effect": "Allow",
                                "Action": "iot:OpenTunnel",
                                "Condition": {
                                    "ForAllValues:StringEquals": {
                                        "iot:TunnelDestinationService": ["SSH"],
                                        "aws:TagKeys": [
                                            "iot-remote-access:requester",
                                            "iot-remote-access:reason",
                                            "iot-remote-access:expires-at",
                                        ],
                                    }
                                },
                            }
                        )
                    ]
                )
            },
        },
    )
    # Nobody may delete a tunnel's record, not even the broker or the sweeper.
    closers = _roles_allowed(template, "iot:CloseTunnel")
    assert closers == {broker_role, _role_of(template, SWEEPER_HANDLER)}
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if _allows(statement, "iot:CloseTunnel"):
                assert statement["Condition"] == {"Bool": {"iot:Delete": "false"}}


def test_operator_policy_denies_opening_tunnels_around_the_broker(
    reference: tuple[Template, Path],
) -> None:
    template, _ = reference
    (policy,) = template.find_resources("AWS::IAM::ManagedPolicy").values()
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["NoTunnelsAroundTheBroker"] == {
        "Sid": "NoTunnelsAroundTheBroker",
        "Effect": "Deny",
        "Action": ["iot:OpenTunnel", "iot:RotateTunnelAccessToken"],
        "Resource": "*",
    }
    broker_arn = {"Fn::GetAtt": [_function_id(template, BROKER_HANDLER), "Arn"]}
    assert statements["InvokeTheBrokerUrl"] | {"Sid": None} == {
        "Sid": None,
        "Effect": "Allow",
        "Action": "lambda:InvokeFunctionUrl",
        "Resource": broker_arn,
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
    }
    assert statements["InvokeTheBrokerThroughItsUrlOnly"]["Condition"] == {
        "Bool": {"lambda:InvokedViaFunctionUrl": "true"}
    }
    assert statements["ListAndDescribeTunnels"]["Action"] == [
        "iot:ListTunnels",
        "iot:DescribeTunnel",
    ]
    assert statements["CloseTunnels"]["Condition"] == {"Bool": {"iot:Delete": "false"}}
    assert not any(_allows(s, "iot:OpenTunnel") for s in statements.values())
    assert not template.find_resources(
        "AWS::IAM::Role", {"Properties": {"ManagedPolicyArns": Match.any_value()}}
    )  # no operator role by default


def _function_id(template: Template, handler: str) -> str:
    (name,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": handler}}
    ).keys()
    return name


def test_audit_trail_validates_encrypts_and_keeps_a_tls_only_private_bucket(
    reference: tuple[Template, Path],
) -> None:
    template, _ = reference
    template.has_resource_properties(
        "AWS::CloudTrail::Trail",
        {
            "EnableLogFileValidation": True,
            "IsMultiRegionTrail": True,
            "IncludeGlobalServiceEvents": True,
            "KMSKeyId": {"Fn::GetAtt": [Match.string_like_regexp("AuditTrailKey"), "Arn"]},
            "CloudWatchLogsLogGroupArn": {
                "Fn::GetAtt": [Match.string_like_regexp("AuditTrailLogs"), "Arn"]
            },
            "S3BucketName": {"Ref": Match.string_like_regexp("AuditTrailBucket")},
        },
    )
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    Match.object_like(
                        {
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": Match.any_value(),
                            }
                        }
                    )
                ]
            },
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {"Id": "AuditRetention", "ExpirationInDays": 365, "Status": "Enabled"}
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
                                "Action": "s3:*",
                                "Principal": {"AWS": "*"},
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "AllowCloudTrailToEncryptLogFiles",
                                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                                "Action": "kms:GenerateDataKey*",
                                "Condition": {
                                    "ArnLike": {
                                        "aws:SourceArn": {
                                            "Fn::Join": [
                                                "",
                                                [
                                                    "arn:",
                                                    {"Ref": "AWS::Partition"},
                                                    ":cloudtrail:*:",
                                                    {"Ref": "AWS::AccountId"},
                                                    ":trail/*",
                                                ],
                                            ]
                                        }
                                    },
                                    "StringLike": {
                                        "kms:EncryptionContext:aws:cloudtrail:arn": Match.any_value()
                                    },
                                },
                            }
                        )
                    ]
                )
            },
        },
    )
    # CloudTrail's log group and the audit records of the broker and the sweeper are
    # encrypted with the trail's key.
    (trail,) = template.find_resources("AWS::CloudTrail::Trail").values()
    key = trail["Properties"]["KMSKeyId"]
    groups = template.find_resources("AWS::Logs::LogGroup")
    audit_groups = [
        name
        for name in groups
        if name.startswith(
            ("AuditTrailLogs", "SecureTunnelingBrokerLogs", "SecureTunnelingSweeperLogs")
        )
    ]
    assert len(audit_groups) == 3
    for name in audit_groups:
        assert groups[name]["Properties"]["KmsKeyId"] == key


def test_device_policy_lets_devices_receive_their_tunnel_notifications(
    reference: tuple[Template, Path],
) -> None:
    template, _ = reference
    text = json.dumps(template.find_resources("AWS::IoT::Policy"))
    assert "topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/tunnels/notify" in text
    assert "topic/$aws/things/${iot:Connection.Thing.ThingName}/tunnels/notify" in text


def test_settings_reach_the_broker_sweeper_trail_and_operator_role(
    configured: tuple[Template, Path],
) -> None:
    template, template_file = configured
    (function,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": BROKER_HANDLER}}
    ).values()
    policy = TunnelPolicy.from_json(
        function["Properties"]["Environment"]["Variables"]["TUNNEL_POLICY"]
    )
    assert policy == TunnelPolicy(
        allowed_services=("SSH", "VNC"),
        default_lifetime_minutes=30,
        max_lifetime_minutes=240,
        max_open_tunnels_per_thing=2,
        connect_grace_minutes=10,
        thing_groups=("production",),
        thing_name_pattern="sensor-[0-9]+",
    )
    broker_role = _role_of(template, BROKER_HANDLER)
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": broker_role}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "iot:OpenTunnel",
                                "Condition": {
                                    "ForAllValues:StringEquals": Match.object_like(
                                        {"iot:TunnelDestinationService": ["SSH", "VNC"]}
                                    )
                                },
                            }
                        ),
                        Match.object_like(
                            {"Sid": "ReadThingGroupParents", "Action": "iot:DescribeThingGroup"}
                        ),
                        Match.object_like(
                            {
                                "Sid": "CheckThings",
                                "Action": ["iot:DescribeThing", "iot:ListThingGroupsForThing"],
                            }
                        ),
                    ]
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(10 minutes)"}
    )
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {"LifecycleConfiguration": {"Rules": [Match.object_like({"ExpirationInDays": 90})]}},
    )
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "MaxSessionDuration": 3600,
            "ManagedPolicyArns": [{"Ref": Match.string_like_regexp("OperatorPolicy")}],
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {
                                "AWS": {
                                    "Fn::Join": [
                                        "",
                                        [
                                            "arn:",
                                            {"Ref": "AWS::Partition"},
                                            ":iam::",
                                            {"Ref": "AWS::AccountId"},
                                            ":root",
                                        ],
                                    ]
                                }
                            }
                        }
                    )
                ]
            },
        },
    )
    assert len(_roles_allowed(template, "iot:OpenTunnel")) == 1
    assert cfn_lint_errors(template_file) == []


def test_stack_with_an_explicit_environment_passes_cdk_nag_and_cfn_lint(tmp_path: Path) -> None:
    """cdk-nag names findings by concrete ARNs then; the acknowledgements must follow."""
    env = cdk.Environment(account="123456789012", region="eu-west-1")
    _, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", env=env), tmp_path
    )
    assert _roles_allowed(template, "iot:OpenTunnel") == {_role_of(template, BROKER_HANDLER)}
    assert cfn_lint_errors(template_file) == []


def test_tunneling_can_be_turned_off(tmp_path: Path) -> None:
    settings = FleetSettings.parse({"tunneling": {"enabled": False}})
    stack, template, _ = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings), tmp_path
    )
    for handler in (BROKER_HANDLER, SWEEPER_HANDLER):
        assert (
            template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": handler}})
            == {}
        )
    assert template.find_resources("AWS::CloudTrail::Trail") == {}
    assert template.find_resources("AWS::Lambda::Url") == {}
    assert "tunnels/notify" not in json.dumps(template.find_resources("AWS::IoT::Policy"))
    assert stack.secure_tunneling is None and stack.audit_trail is None  # type: ignore[attr-defined]


def _bare_stack() -> cdk.Stack:
    return cdk.Stack(
        cdk.App(), "Bare", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )


@pytest.mark.parametrize("interval", [cdk.Duration.seconds(30), cdk.Duration.hours(2)])
def test_sweep_interval_outside_1_to_60_minutes_is_refused(interval: cdk.Duration) -> None:
    stack = _bare_stack()
    with pytest.raises(
        ValueError, match=r"sweep_interval: .* is not allowed; allowed: 1 to 60 minutes"
    ):
        SecureTunneling(
            stack, "Tunnels", device_policy=DevicePolicy(stack, "Policy"), sweep_interval=interval
        )


@pytest.mark.parametrize("days", [0, -1])
def test_audit_retention_must_be_whole_days(days: Any) -> None:
    with pytest.raises(
        ValueError,
        match=rf"retention_days: {days} is not allowed; allowed: a whole number of days, at least 1",
    ):
        AuditTrail(_bare_stack(), "Trail", retention_days=days)


def test_audit_retention_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"^AuditTrail retention_days: got float 1\.5; allowed"):
        AuditTrail(_bare_stack(), "Trail", retention_days=1.5)


def test_audit_trail_exposes_its_resources_for_other_constructs() -> None:
    trail = AuditTrail(_bare_stack(), "Trail", retention_days=30)
    assert trail.trail and trail.bucket and trail.log_group and trail.key


@pytest.mark.parametrize("package", ["tunnel_broker", "tunnel_sweeper"])
def test_lambda_code_imports_only_stdlib_powertools_boto3_and_core(package: str) -> None:
    staged = stage_handler_code(package) / "iot_remote_access"
    assert (staged / "core" / "tunnel_rules.py").is_file()
    assert (staged / "lambdas" / package / "handler.py").is_file()
    allowed_roots = {"aws_lambda_powertools", "boto3", "botocore", "iot_remote_access"}
    for source in [*staged.rglob("*.py")]:
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                root = name.split(".")[0]
                assert root in allowed_roots or root in _stdlib(), f"{source}: imports {name}"
                if root == "iot_remote_access":
                    assert name.startswith(
                        ("iot_remote_access.core", "iot_remote_access.lambdas")
                    ), name
    assert (PACKAGE_ROOT / "lambdas" / package / "handler.py").is_file()


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names)
