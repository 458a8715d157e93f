"""CertificateRotation in the reference stack: real synth, cdk-nag, the guard, cfn-lint."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from iot_remote_access.constructs.aws import DevicePolicy
from iot_remote_access.constructs.aws.certificate_rotation import (
    SHARED,
    CertificateRotation,
    _mqtt_filter,
)
from iot_remote_access.constructs.aws.device_defender_audit import DeviceDefenderAudit
from iot_remote_access.constructs.aws.library_function import PACKAGE_ROOT, stage_handler_code
from iot_remote_access.constructs.aws.private_ca import PrivateCa
from iot_remote_access.settings import FleetSettings, SettingsError
from iot_remote_access.stacks import IotRemoteAccessStack
from tests.support.aws_synth import cfn_lint_errors, synth_checked

CA_ARN = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/0b9f0a9e-1111-2222-3333-444455556666"


REFERENCE_STACKS: list[IotRemoteAccessStack] = []


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path]:
    settings = FleetSettings.parse({"certificates": {}})
    stack, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings),
        tmp_path_factory.mktemp("ref"),
    )
    assert isinstance(stack, IotRemoteAccessStack)
    REFERENCE_STACKS.append(stack)
    return template, template_file


def test_reference_stack_with_rotation_passes_nag_guard_and_cfn_lint(
    reference: tuple[Template, Path],
) -> None:
    template, template_file = reference
    assert cfn_lint_errors(template_file) == []
    template.resource_count_is("AWS::ACMPCA::CertificateAuthority", 1)
    for package in ("cert_signer", "cert_confirm", "cert_planner", "cert_worker"):
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": f"iot_remote_access.lambdas.{package}.handler.handler",
            },
        )
    # Alarms and audit findings go to the security monitoring's alarm topic: no second one.
    stack = REFERENCE_STACKS[-1]
    assert stack.certificate_rotation is not None and stack.security_monitoring is not None
    assert stack.certificate_rotation.alarm_topic is stack.security_monitoring.alarm_topic


def test_private_ca_is_created_activated_with_ocsp(reference: tuple[Template, Path]) -> None:
    template, _ = reference
    template.has_resource(
        "AWS::ACMPCA::CertificateAuthority",
        {
            "Properties": {
                "Type": "ROOT",
                "UsageMode": "GENERAL_PURPOSE",
                "KeyAlgorithm": "EC_prime256v1",
                "RevocationConfiguration": {"OcspConfiguration": {"Enabled": True}},
            },
            "DeletionPolicy": "Retain",
        },
    )
    template.has_resource_properties(
        "AWS::ACMPCA::CertificateAuthorityActivation", {"Status": "ACTIVE"}
    )


def test_inventory_table_has_expiry_index_pitr_and_kms(reference: tuple[Template, Path]) -> None:
    template, _ = reference
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "thing", "KeyType": "HASH"}],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": Match.any_value(),
            },
            "GlobalSecondaryIndexes": Match.array_with(
                [
                    Match.object_like(
                        {
                            "IndexName": "byExpiryDay",
                            "KeySchema": [
                                {"AttributeName": "expiryDay", "KeyType": "HASH"},
                                {"AttributeName": "thing", "KeyType": "RANGE"},
                            ],
                        }
                    ),
                    Match.object_like({"IndexName": "bySlot"}),
                    Match.object_like({"IndexName": "byRevokeDay"}),
                ]
            ),
        },
    )


def test_device_policy_gets_exactly_its_own_rotation_topics(
    reference: tuple[Template, Path],
) -> None:
    template, _ = reference
    (policy,) = template.find_resources("AWS::IoT::Policy").values()
    text = json.dumps(policy["Properties"]["PolicyDocument"])
    for topic in (
        "topic/rot/${iot:Connection.Thing.ThingName}/csr",
        "topicfilter/rot/${iot:Connection.Thing.ThingName}/certificate",
        "topic/rot/${iot:Connection.Thing.ThingName}/confirm",
    ):
        assert topic in text
    assert "rot/+" not in text and "rot/*" not in text


def test_rules_pass_topic_and_principal_to_the_signer_and_confirm(
    reference: tuple[Template, Path],
) -> None:
    template, _ = reference
    for sql in (
        "SELECT csr, topic() AS topic, principal() AS principal FROM 'rot/+/csr'",
        "SELECT topic() AS topic, principal() AS principal FROM 'rot/+/confirm'",
    ):
        template.has_resource_properties(
            "AWS::IoT::TopicRule",
            {
                "TopicRulePayload": {
                    "Sql": sql,
                    "Actions": [{"Lambda": {"FunctionArn": Match.any_value()}}],
                    "ErrorAction": {"CloudwatchLogs": Match.any_value()},
                }
            },
        )
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Principal": "iot.amazonaws.com",
            "SourceArn": Match.any_value(),
            "SourceAccount": Match.any_value(),
        },
    )


def test_signer_may_issue_only_through_the_passthrough_template(
    reference: tuple[Template, Path],
) -> None:
    template, _ = reference
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "acm-pca:IssueCertificate",
                                "Condition": {
                                    "StringEquals": {
                                        "acm-pca:TemplateArn": "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APIPassthrough/V1"
                                    }
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_daily_plan_hourly_dispatch_and_fan_out_queue(reference: tuple[Template, Path]) -> None:
    template, _ = reference
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "cron(0 2 * * ? *)",
            "Targets": [
                Match.object_like({"Input": json.dumps({"action": "plan"}, separators=(",", ":"))})
            ],
        },
    )
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "cron(5 * * * ? *)",
            "Targets": [
                Match.object_like(
                    {"Input": json.dumps({"action": "dispatch"}, separators=(",", ":"))}
                )
            ],
        },
    )
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "KmsMasterKeyId": Match.any_value(),
            "RedrivePolicy": {"maxReceiveCount": 5, "deadLetterTargetArn": Match.any_value()},
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )


def test_job_template_has_rollout_and_timeout_limits(reference: tuple[Template, Path]) -> None:
    template, _ = reference
    template.has_resource_properties(
        "AWS::IoT::JobTemplate",
        {
            "JobExecutionsRolloutConfig": {"MaximumPerMinute": 9},  # ceil(500 per hour / 60)
            "TimeoutConfig": {"InProgressTimeoutInMinutes": 1440},
            "AbortConfig": {"CriteriaList": [Match.object_like({"Action": "CANCEL"})]},
        },
    )


def test_device_defender_audit_checks_certificates_daily(reference: tuple[Template, Path]) -> None:
    template, _ = reference
    template.has_resource_properties(
        "AWS::IoT::AccountAuditConfiguration",
        {
            "AuditCheckConfigurations": Match.object_like(
                {
                    "DeviceCertificateExpiringCheck": {
                        "Enabled": True,
                        "Configuration": {"CertExpirationThresholdInDays": "90"},
                    },
                    "IotPolicyOverlyPermissiveCheck": {"Enabled": True},
                    "CaCertificateExpiringCheck": {"Enabled": True},
                    "DeviceCertificateSharedCheck": {"Enabled": True},
                    "RevokedDeviceCertificateStillActiveCheck": {"Enabled": True},
                }
            ),
            "AuditNotificationTargetConfigurations": {"Sns": Match.object_like({"Enabled": True})},
        },
    )
    template.has_resource_properties(
        "AWS::IoT::ScheduledAudit",
        {
            "Frequency": "DAILY",
            "TargetCheckNames": Match.array_with(
                [
                    "DEVICE_CERTIFICATE_EXPIRING_CHECK",
                    "CA_CERTIFICATE_EXPIRING_CHECK",
                    "DEVICE_CERTIFICATE_SHARED_CHECK",
                    "IOT_POLICY_OVERLY_PERMISSIVE_CHECK",
                ]
            ),
        },
    )


def test_alarm_when_a_certificate_is_inside_30_days_without_rotation(
    reference: tuple[Template, Path],
) -> None:
    template, _ = reference
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "CriticalWithoutRotation",
            "Namespace": "IotRemoteAccess",
            "Threshold": 1,
            "TreatMissingData": "breaching",
            "AlarmActions": [Match.any_value()],
        },
    )
    for metric in ("RotationsExhausted", "ApproximateNumberOfMessagesVisible", "Errors"):
        template.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": metric})


def test_existing_ca_and_custom_limits(tmp_path: Path) -> None:
    settings = FleetSettings.parse(
        {
            "certificates": {
                "caArn": CA_ARN,
                "leadTimeDays": 120,
                "hourlyRotationBudget": 6000,
                "dailyRunHour": 4,
            }
        }
    )
    _, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings), tmp_path
    )
    template.resource_count_is("AWS::ACMPCA::CertificateAuthority", 0)
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Action": "acm-pca:IssueCertificate", "Resource": CA_ARN}
                        ),
                    ]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::IoT::JobTemplate", {"JobExecutionsRolloutConfig": {"MaximumPerMinute": 100}}
    )
    template.has_resource_properties(
        "AWS::IoT::AccountAuditConfiguration",
        {
            "AuditCheckConfigurations": Match.object_like(
                {
                    "DeviceCertificateExpiringCheck": {
                        "Enabled": True,
                        "Configuration": {"CertExpirationThresholdInDays": "120"},
                    },
                }
            )
        },
    )
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "cron(0 4 * * ? *)"}
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "LEAD_DAYS": "120",
                        "HOURLY_BUDGET": "6000",
                        "CA_ARN": CA_ARN,
                    }
                )
            }
        },
    )
    assert cfn_lint_errors(template_file) == []


def test_without_a_certificates_section_nothing_is_added(tmp_path: Path) -> None:
    _, template, _ = synth_checked(lambda app: IotRemoteAccessStack(app, "Ref"), tmp_path)
    template.resource_count_is("AWS::ACMPCA::CertificateAuthority", 0)
    # The reference stack's other tables (TunnelAlarms' state) are not the inventory.
    assert not [
        t
        for t in template.find_resources("AWS::DynamoDB::Table")
        if t.startswith("CertificateRotation")
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"leadTimeDays": 20},
            r"certificates\.leadTimeDays: 20: Input should be greater than or equal to 30",
        ),
        (
            {"caArn": "arn:aws:iam::1:role/x"},
            r"certificates\.caArn: 'arn:aws:iam::1:role/x' is not an ACM Private CA ARN",
        ),
        ({"leadTimeDays": 400}, r"leadTimeDays: 400 is not below baseValidityDays 365"),
        (
            {"staggerWindowDays": 0},
            r"certificates\.staggerWindowDays: 0: Input should be greater than or equal to 1",
        ),
        (
            {"baseValidityDays": 3600, "staggerWindowDays": 90},
            r"3600 \+ 90 gives 3689 days; allowed: at most 3650",
        ),
        ({"hourlyRotationBudget": 0}, r"certificates\.hourlyRotationBudget: 0"),
        (
            {"retryBackoffHours": 48, "maxRetryBackoffHours": 24},
            r"maxRetryBackoffHours: 24 is below retryBackoffHours 48",
        ),
        ({"rotationBudget": 5}, r"certificates\.rotationBudget: unknown setting; allowed: caArn, "),
    ],
)
def test_bad_certificate_settings_name_field_value_and_allowed(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        FleetSettings.parse({"certificates": raw})


def _stack() -> cdk.Stack:
    return cdk.Stack(
        cdk.App(), "S", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )


def test_construct_level_bad_values_are_refused_at_synth() -> None:
    with pytest.raises(
        ValueError, match=r"existing_ca_arn: 'arn:aws:kms:x' is not an ACM Private CA ARN"
    ):
        PrivateCa(_stack(), "Ca", existing_ca_arn="arn:aws:kms:x")
    stack = _stack()
    topic = __import__("aws_cdk.aws_sns", fromlist=["Topic"]).Topic(stack, "T")
    with pytest.raises(ValueError, match=r"expiring_threshold_days: 20; allowed: 30\.\.3652"):
        DeviceDefenderAudit(stack, "A", findings_topic=topic, expiring_threshold_days=20)
    with pytest.raises(ValueError, match=r"checks: \['NOPE'\]; allowed: a non-empty subset"):
        DeviceDefenderAudit(
            stack, "B", findings_topic=topic, expiring_threshold_days=90, checks=["NOPE"]
        )
    with pytest.raises(ValueError, match=r"topic: \"rot/\{thing\}/it's\" contains a quote"):
        _mqtt_filter("rot/{thing}/it's")


def test_rotation_turns_on_the_policy_switch() -> None:
    stack = _stack()
    policy = DevicePolicy(stack, "P")
    assert not policy.access.rotation
    CertificateRotation(stack, "R", device_policy=policy, audit=False)
    assert policy.access.rotation


ALLOWED_THIRD_PARTY = {"boto3", "botocore", "aws_lambda_powertools"}


def test_lambda_assets_import_only_stdlib_boto3_powertools_and_core() -> None:
    """What LibraryFunction stages is all the Lambda has: check every import in it."""
    for handler in ("cert_signer", "cert_confirm", "cert_planner", "cert_worker"):
        staged = stage_handler_code(handler, SHARED)  # as CertificateRotation stages it
        files = list(staged.rglob("*.py"))
        assert staged / "iot_remote_access" / "lambdas" / "certs" / "issuance.py" in files
        for file in files:
            for node in ast.walk(ast.parse(file.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else (
                        [node.module]
                        if isinstance(node, ast.ImportFrom) and node.module and not node.level
                        else []
                    )
                )
                for name in names:
                    top = name.split(".")[0]
                    if top == "iot_remote_access":
                        assert name.startswith(
                            ("iot_remote_access.core", "iot_remote_access.lambdas")
                        ), (file, name)
                        assert (staged / Path(*name.split("."))).with_suffix(".py").exists() or (
                            staged / Path(*name.split("."))
                        ).is_dir(), (file, name)
                    else:
                        assert (
                            top in sys.stdlib_module_names
                            or top in ALLOWED_THIRD_PARTY
                            or top == "__future__"
                        ), (file, name)


def test_unknown_shared_package_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shared_packages: 'nope' is not a package under"):
        stage_handler_code("cert_signer", ("nope",))
    assert (PACKAGE_ROOT / "lambdas" / "certs" / "__init__.py").is_file()
