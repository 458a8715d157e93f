"""The constructs' API follows aws-cdk-lib's L2 conventions (issue 18, "Construct API").

Wrong types fail at the call with a ``TypeError`` naming the parameter and the
type received; CDK tokens pass where a token is legal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns

from iot_remote_access.constructs.aws import (
    AccessLedger,
    AlarmTopic,
    AuditTrail,
    CertificateInventory,
    CertificateRotation,
    CommandBroker,
    DeviceDefenderAudit,
    DevicePolicy,
    IncidentClocks,
    IotLogging,
    LibraryFunction,
    PrivateCa,
    SecureTunneling,
    SecurityMonitoring,
    SecurityTopicRule,
    SiemExport,
    TunnelAlarms,
)
from iot_remote_access.core.tunnel_rules import TunnelPolicy


def _stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "User")


def _policy(stack: cdk.Stack) -> DevicePolicy:
    return DevicePolicy(stack, "Fleet")


def _logs(stack: cdk.Stack) -> logs.LogGroup:
    return logs.LogGroup(stack, "Logs")


WRONG_TYPES: dict[str, tuple[Callable[[cdk.Stack], Any], str]] = {
    "AccessLedger": (
        lambda s: AccessLedger(s, "L", retention_days="730"),
        r"^AccessLedger retention_days: got str '730'; allowed: int or a CDK number token$",
    ),
    "IncidentClocks": (
        lambda s: IncidentClocks(s, "I", ledger="ledger", alarm_topic=sns.Topic(s, "T")),
        r"^IncidentClocks ledger: got str 'ledger'; allowed: access_ledger\.AccessLedger$",
    ),
    "CommandBroker": (
        lambda s: CommandBroker(s, "C", topics="cmd/{thing}/commands"),
        r"^CommandBroker topics: got str 'cmd/\{thing\}/commands'; allowed: topics\.TopicModel or None$",
    ),
    "AlarmTopic": (
        lambda s: AlarmTopic(s, "T", email_addresses="ops@example.com"),
        r"^AlarmTopic email_addresses: got str 'ops@example\.com'; allowed: a list of str$",
    ),
    "AuditTrail": (
        lambda s: AuditTrail(s, "A", removal_policy="retain"),
        r"^AuditTrail removal_policy: got str 'retain'; allowed: .*RemovalPolicy$",
    ),
    "CertificateInventory": (
        lambda s: CertificateInventory(s, "I", encryption_key="alias/mine"),
        r"^CertificateInventory encryption_key: got str 'alias/mine'; "
        r"allowed: kms\.IKey or None$",
    ),
    "CertificateRotation": (
        lambda s: CertificateRotation(s, "R", device_policy=_policy(s), audit="no"),
        r"^CertificateRotation audit: got str 'no'; allowed: bool$",
    ),
    "DeviceDefenderAudit": (
        lambda s: DeviceDefenderAudit(
            s, "D", findings_topic=AlarmTopic(s, "T"), expiring_threshold_days=60
        ),
        r"^DeviceDefenderAudit findings_topic: got AlarmTopic .*; allowed: sns\.ITopic$",
    ),
    "DevicePolicy": (
        lambda s: DevicePolicy(s, "P", topics="dt/{thing}/telemetry"),
        r"^DevicePolicy topics: got str 'dt/\{thing\}/telemetry'; "
        r"allowed: topics\.TopicModel or None$",
    ),
    "IotLogging": (
        lambda s: IotLogging(s, "L", retention=30),
        r"^IotLogging retention: got int 30; allowed: aws_logs\.RetentionDays$",
    ),
    "LibraryFunction": (
        lambda s: LibraryFunction(
            s, "F", handler_package="tunnel_sweeper", description="d", memory_size="512"
        ),
        r"^LibraryFunction memory_size: got str '512'; allowed: int or a CDK number token$",
    ),
    "PrivateCa": (
        lambda s: PrivateCa(s, "C", validity_years=5.5),
        r"^PrivateCa validity_years: got float 5\.5; allowed: int$",
    ),
    "SecureTunneling": (
        lambda s: SecureTunneling(s, "S", device_policy=_policy(s), sweep_interval=300),
        r"^SecureTunneling sweep_interval: got int 300; allowed: .*Duration$",
    ),
    "SecurityMonitoring": (
        lambda s: SecurityMonitoring(
            s, "M", device_access=_policy(s), log_groups_to_export=_logs(s)
        ),
        r"^SecurityMonitoring log_groups_to_export: got LogGroup .*; "
        r"allowed: a list of logs\.ILogGroup$",
    ),
    "SecurityTopicRule": (
        lambda s: SecurityTopicRule(
            s, "R", sql="SELECT * FROM 'a'", description="d", error_log_group="errors"
        ),
        r"^SecurityTopicRule error_log_group: got str 'errors'; allowed: logs\.ILogGroup$",
    ),
    "SiemExport": (
        lambda s: SiemExport(s, "X", retention_days="400"),
        r"^SiemExport retention_days: got str '400'; allowed: int$",
    ),
    "TunnelAlarms": (
        lambda s: TunnelAlarms(s, "T", max_opens_per_thing_per_day=True),
        r"^TunnelAlarms max_opens_per_thing_per_day: got bool True; "
        r"allowed: int or a CDK number token$",
    ),
}


@pytest.mark.parametrize("construct", list(WRONG_TYPES))
def test_a_wrong_type_fails_at_the_call_naming_the_parameter(construct: str) -> None:
    build, message = WRONG_TYPES[construct]
    with pytest.raises(TypeError, match=message):
        build(_stack())


def test_every_construct_has_a_wrong_type_case() -> None:
    from tests.support.aws_user_stacks import CASES

    assert {case.split("(")[0] for case in CASES} == set(WRONG_TYPES)


@pytest.mark.parametrize(
    ("field", "value"),
    [("allowed_services", "SSH"), ("thing_groups", "field"), ("allowed_services", None)],
)
def test_tunnel_policy_refuses_a_string_for_a_list(field: str, value: object) -> None:
    """``"SSH"`` used to become ``('S', 'S', 'H')`` silently."""
    with pytest.raises(TypeError, match=rf"^TunnelPolicy {field}: got \w+ .*; allowed: a list"):
        TunnelPolicy(**{field: value})


def test_a_failed_check_leaves_nothing_in_the_tree() -> None:
    stack = _stack()
    with pytest.raises(TypeError):
        AlarmTopic(stack, "T", display_name=42)
    assert stack.node.try_find_child("T") is None


def test_tokens_pass_where_a_token_is_legal() -> None:
    stack = _stack()
    days = cdk.CfnParameter(stack, "Days", type="Number", default=90)
    AuditTrail(stack, "Audit", retention_days=days.value_as_number)
    TunnelAlarms(stack, "Tunnels", max_opens_per_thing_per_day=days.value_as_number)
    policy = DevicePolicy(stack, "Fleet", policy_name=cdk.Fn.ref("AWS::StackName"))
    assert cdk.Token.is_unresolved(policy.policy.policy_name)


def test_imported_resources_pass_as_their_interfaces() -> None:
    stack = cdk.Stack(
        cdk.App(), "User", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )
    key = kms.Key.from_key_arn(
        stack, "Key", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    topic = sns.Topic.from_topic_arn(stack, "Topic", "arn:aws:sns:eu-west-1:123456789012:alerts")
    group = logs.LogGroup.from_log_group_name(stack, "Group", "platform")
    SiemExport(stack, "Siem", log_groups=[group], encryption_key=key)
    DeviceDefenderAudit(stack, "Audit", findings_topic=topic, expiring_threshold_days=30)


# -- what a team brings: topics, keys, retention, removal -------------------------------

PINNED_ENV = cdk.Environment(account="123456789012", region="eu-west-1")
IMPORTED_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _imported_key(stack: cdk.Stack) -> kms.IKey:
    return kms.Key.from_key_arn(stack, "TeamKey", IMPORTED_KEY_ARN)


def _warnings(stack: cdk.Stack) -> list[str]:
    from aws_cdk.assertions import Annotations, Match

    return [
        str(entry.entry.data)
        for entry in Annotations.from_stack(stack).find_warning("*", Match.any_value())
    ]


@pytest.mark.parametrize(
    ("build", "grant"),
    [
        (
            lambda s: AlarmTopic(s, "Alarms", key=_imported_key(s)),
            '"Sid":"AllowAlarmPublishersToEncrypt"',
        ),
        (
            lambda s: AuditTrail(s, "Audit", key=_imported_key(s)),
            '"Sid":"AllowCloudTrailToEncryptLogFiles"',
        ),
        (
            lambda s: SiemExport(s, "Siem", encryption_key=_imported_key(s)),
            '"Principal":{"Service":"logs.eu-west-1.amazonaws.com"}',
        ),
        (
            lambda s: SecureTunneling(
                s, "Tunnels", device_policy=_policy(s), encryption_key=_imported_key(s)
            ),
            '"Sid":"AllowCloudWatchLogsToUseKey"',
        ),
    ],
    ids=["AlarmTopic", "AuditTrail", "SiemExport", "SecureTunneling"],
)
def test_an_imported_key_warns_with_the_grant_to_add(
    build: Callable[[cdk.Stack], Any], grant: str
) -> None:
    stack = cdk.Stack(cdk.App(), "Team", env=PINNED_ENV)
    build(stack)
    warnings = _warnings(stack)
    assert any(
        "is imported, so its key policy cannot be changed here" in w and grant in w
        for w in warnings
    ), warnings


def test_a_key_of_the_app_gets_the_statement_and_no_warning() -> None:
    stack = cdk.Stack(cdk.App(), "Team", env=PINNED_ENV)
    key = kms.Key(stack, "TeamKey")
    AlarmTopic(stack, "Alarms", key=key)
    SecureTunneling(stack, "Tunnels", device_policy=_policy(stack), encryption_key=key)
    assert [w for w in _warnings(stack) if "key policy" in w] == []
    from aws_cdk.assertions import Match, Template

    Template.from_stack(stack).has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [Match.object_like({"Sid": "AllowAlarmPublishersToEncrypt"})]
                )
            }
        },
    )


def test_log_retention_and_removal_policy_reach_what_is_created() -> None:
    from aws_cdk.assertions import Match, Template

    stack = cdk.Stack(cdk.App(), "Team")
    TunnelAlarms(
        stack,
        "Tunnels",
        log_retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    CertificateInventory(stack, "Inventory", removal_policy=cdk.RemovalPolicy.DESTROY)
    SiemExport(stack, "Siem", removal_policy=cdk.RemovalPolicy.DESTROY)
    template = Template.from_stack(stack)
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like({"TimeToLiveSpecification": Match.any_value()}),
        },
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Delete",
            "Properties": Match.object_like({"DeletionProtectionEnabled": False}),
        },
    )
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    assert {b["DeletionPolicy"] for b in buckets.values()} == {"Delete"}


def test_defaults_keep_records_and_drop_derived_state() -> None:
    from aws_cdk.assertions import Match, Template

    stack = cdk.Stack(cdk.App(), "Team")
    TunnelAlarms(stack, "Tunnels")
    CertificateInventory(stack, "Inventory")
    template = Template.from_stack(stack)
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Delete",
            "Properties": Match.object_like({"TimeToLiveSpecification": Match.any_value()}),
        },
    )
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like({"DeletionProtectionEnabled": True}),
        },
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 365})


# -- grants and metrics -----------------------------------------------------------------


def _policy_statements(template: Any, role_prefix: str) -> list[dict[str, Any]]:
    from aws_cdk.assertions import Match

    policies = template.find_resources(
        "AWS::IAM::Policy",
        {"Properties": {"Roles": [{"Ref": Match.string_like_regexp(f"^{role_prefix}")}]}},
    )
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_grant_open_lets_an_operator_call_the_broker_through_its_url_only() -> None:
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Match, Template

    stack = cdk.Stack(cdk.App(), "Team", env=PINNED_ENV)
    tunnels = SecureTunneling(stack, "Tunnels", device_policy=_policy(stack))
    operators = iam.Role(stack, "Operators", assumed_by=iam.AccountRootPrincipal())
    grant = tunnels.grant_open(operators)
    assert grant.success
    broker = {"Fn::GetAtt": [Match.string_like_regexp("^TunnelsBrokerFunction"), "Arn"]}
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": Match.string_like_regexp("^Operators")}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "lambda:InvokeFunctionUrl",
                                "Resource": broker,
                                "Condition": {
                                    "StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}
                                },
                            }
                        ),
                        Match.object_like(
                            {
                                "Action": "lambda:InvokeFunction",
                                "Resource": broker,
                                "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
                            }
                        ),
                    ]
                )
            },
        },
    )
    actions = {str(s["Action"]) for s in _policy_statements(template, "Operators")}
    assert actions == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}


def test_grant_open_refuses_what_cannot_be_granted() -> None:
    stack = _stack()
    tunnels = SecureTunneling(stack, "Tunnels", device_policy=_policy(stack))
    with pytest.raises(
        TypeError, match=r"^SecureTunneling\.grant_open grantee: got str 'ops'; allowed: iam\."
    ):
        tunnels.grant_open("ops")  # type: ignore[arg-type]


def test_grant_read_lets_a_reader_read_and_decrypt_the_inventory_only() -> None:
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Template

    stack = cdk.Stack(cdk.App(), "Team", env=PINNED_ENV)
    inventory = CertificateInventory(stack, "Inventory")
    auditors = iam.Role(stack, "Auditors", assumed_by=iam.AccountRootPrincipal())
    inventory.grant_read(auditors)
    statements = _policy_statements(Template.from_stack(stack), "Auditors")
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "dynamodb:GetItem" in actions and "dynamodb:Query" in actions
    assert "kms:Decrypt" in actions
    assert not [
        a
        for a in actions
        if a.startswith("dynamodb:") and ("Put" in a or "Delete" in a or "Update" in a)
    ]
    key_statement = next(
        s for s in statements if s["Action"] == "kms:Decrypt" or "kms:Decrypt" in s["Action"]
    )
    assert key_statement["Resource"]["Fn::GetAtt"][0].startswith("InventoryKey")


def test_tunnel_metrics_name_what_the_function_publishes() -> None:
    from aws_cdk import aws_cloudwatch as cloudwatch
    from aws_cdk.assertions import Template

    from iot_remote_access.constructs.aws.tunnel_alarms import TUNNEL_METRICS

    stack = _stack()
    tunnels = TunnelAlarms(stack, "Tunnels")
    opens = tunnels.metric_opens(thing_name="pump-7")
    assert opens.namespace == "IotRemoteAccess" and opens.metric_name == "TunnelOpenCount"
    assert opens.dimensions == {"ThingName": "pump-7"} and opens.statistic == "Sum"
    assert tunnels.metric_tunnels_open().dimensions is None
    produced = {
        m.metric_name
        for m in (
            tunnels.metric_opens(),
            tunnels.metric_opens_today(),
            tunnels.metric_renewal_loops(),
            tunnels.metric_open_duration(),
            tunnels.metric_open_age(),
            tunnels.metric_tunnels_open(),
            tunnels.metric_unresolved_events(),
        )
    }
    assert produced == set(TUNNEL_METRICS)
    cloudwatch.Alarm(
        stack,
        "PumpOpens",
        metric=opens,
        threshold=2,
        evaluation_periods=1,
    )
    Template.from_stack(stack).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "IotRemoteAccess",
            "MetricName": "TunnelOpenCount",
            "Dimensions": [{"Name": "ThingName", "Value": "pump-7"}],
            "Statistic": "Sum",
            "Period": 86400,
        },
    )
    with pytest.raises(ValueError, match=r"^metric_name: 'Opens' is not published here; allowed: "):
        tunnels.metric("Opens", statistic="Sum")


# -- every construct's docstring example runs -------------------------------------------


def _example(construct: type) -> str:
    """The code of the ``Example::`` block of ``construct``'s docstring."""
    import inspect
    import textwrap

    doc = inspect.getdoc(construct) or ""
    _, found, rest = doc.partition("Example::\n")
    assert found, f"{construct.__name__}: no 'Example::' block in its docstring"
    lines = []
    for line in rest.splitlines():
        if line and not line.startswith(" "):
            break  # the block ends at the first line back at the docstring's margin
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def _exported_constructs() -> list[type]:
    import inspect

    from constructs import Construct

    import iot_remote_access.constructs.aws as aws_constructs

    return [
        value
        for value in vars(aws_constructs).values()
        if inspect.isclass(value) and issubclass(value, Construct)
    ]


@pytest.mark.parametrize("construct", _exported_constructs(), ids=lambda c: c.__name__)
def test_the_docstring_example_synthesizes_in_a_user_stack(construct: type) -> None:
    from aws_cdk.assertions import Template

    code = _example(construct)
    assert f"{construct.__name__}(" in code
    stack = cdk.Stack(cdk.App(), "Example", env=PINNED_ENV)
    exec(compile(code, f"<{construct.__name__} example>", "exec"), {"stack": stack})
    template = Template.from_stack(stack).to_json()
    assert template["Resources"], f"{construct.__name__}: the example created nothing"


def test_the_user_documentation_example_runs() -> None:
    import re

    from aws_cdk.assertions import Template

    from tests.support.paths import REPO_ROOT

    text = (REPO_ROOT / "docs" / "construct-api.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[0]
    scope: dict[str, Any] = {}
    exec(compile(code, "<docs/construct-api.md>", "exec"), scope)
    Template.from_stack(scope["stack"]).resource_count_is("AWS::SNS::Topic", 1)


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {
        action
        for statement in statements
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }


def test_siem_export_grant_read_reads_the_bucket_and_decrypts_only() -> None:
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Template

    stack = cdk.Stack(cdk.App(), "Team", env=PINNED_ENV)
    export = SiemExport(stack, "Siem")
    export.grant_read(iam.Role(stack, "Athena", assumed_by=iam.AccountRootPrincipal()))
    actions = _actions(_policy_statements(Template.from_stack(stack), "Athena"))
    assert {"s3:GetObject*", "s3:List*", "kms:Decrypt"} <= actions
    assert not [a for a in actions if a.startswith("s3:Put") or a.startswith("s3:Delete")]


def test_alarm_topic_grant_publish_covers_its_key() -> None:
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Template

    stack = cdk.Stack(cdk.App(), "Team", env=PINNED_ENV)
    topic = AlarmTopic(stack, "Alarms")
    topic.grant_publish(iam.Role(stack, "Publisher", assumed_by=iam.AccountRootPrincipal()))
    actions = _actions(_policy_statements(Template.from_stack(stack), "Publisher"))
    assert {"sns:Publish", "kms:GenerateDataKey*", "kms:Decrypt"} <= actions


def test_security_and_planner_metrics_match_the_alarms_metrics() -> None:
    from aws_cdk.assertions import Template

    from iot_remote_access.core.security_detections import DETECTIONS, Detection

    stack = _stack()
    fleet = _policy(stack)
    monitoring = SecurityMonitoring(stack, "Monitoring", device_access=fleet)
    failures = monitoring.metric_detection(Detection.AUTHORIZATION_FAILURE)
    assert failures.namespace == "IotRemoteAccess/Security"
    assert failures.metric_name == DETECTIONS[Detection.AUTHORIZATION_FAILURE].metric_name
    Template.from_stack(stack).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"Namespace": failures.namespace, "MetricName": failures.metric_name, "Period": 300},
    )
    rotation = CertificateRotation(stack, "Rotation", device_policy=fleet, audit=False)
    expiring = rotation.metric_planner("ExpiringWithin30Days")
    assert expiring.metric_name == rotation.metrics["ExpiringWithin30Days"].metric_name
    with pytest.raises(ValueError, match=r"^name: 'Expiring' is not a planner metric; allowed: "):
        rotation.metric_planner("Expiring")
    with pytest.raises(
        TypeError, match=r"^SecurityMonitoring\.metric_detection detection: got str"
    ):
        monitoring.metric_detection("authorization_failure")  # type: ignore[arg-type]


def _required(stack: cdk.Stack) -> dict[str, dict[str, Any]]:
    """Valid values for each construct's required keyword arguments."""
    policy = _policy(stack)
    return {
        "CertificateRotation": {"device_policy": policy},
        "DeviceDefenderAudit": {
            "findings_topic": sns.Topic(stack, "Findings"),
            "expiring_threshold_days": 60,
        },
        "IncidentClocks": {
            "ledger": AccessLedger(stack, "Ledger"),
            "alarm_topic": sns.Topic(stack, "Alarms"),
        },
        "LibraryFunction": {"handler_package": "tunnel_sweeper", "description": "d"},
        "SecureTunneling": {"device_policy": policy},
        "SecurityMonitoring": {"device_access": policy},
        "SecurityTopicRule": {
            "sql": "SELECT * FROM 'a'",
            "description": "d",
            "error_log_group": _logs(stack),
        },
    }


@pytest.mark.parametrize("construct", _exported_constructs(), ids=lambda c: c.__name__)
def test_every_keyword_argument_is_type_checked(construct: type) -> None:
    """Each keyword argument given a value no type allows fails naming that very argument."""
    import inspect

    parameters = [
        p
        for p in inspect.signature(construct.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    assert parameters
    for parameter in parameters:
        stack = _stack()
        arguments = {**_required(stack).get(construct.__name__, {}), parameter.name: object()}
        with pytest.raises(
            TypeError, match=rf"^{construct.__name__} {parameter.name}: got object "
        ):
            construct(stack, "Checked", **arguments)


def test_imported_key_warning_reaches_the_cloud_assembly(tmp_path: Any) -> None:
    """Through a real synthesis with cdk-nag on: the warning is in the assembly, not an error."""
    import json

    from tests.support.aws_synth import synth_checked, unacknowledged, validation_report
    from tests.support.aws_user_stacks import PINNED, platform_stack

    synth_checked(platform_stack("TunnelAlarms(imported topic and key)", PINNED), tmp_path)
    assert unacknowledged(validation_report(tmp_path)) == []
    metadata = json.loads((tmp_path / "Platform.metadata.json").read_text())
    warnings = {
        path: entry["data"]
        for path, entries in metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:warning" and "is imported" in str(entry["data"])
    }
    assert list(warnings) == ["/Platform/TunnelAlarms/Metrics"]
    assert (
        '"Service":"logs.eu-central-1.amazonaws.com"' in warnings["/Platform/TunnelAlarms/Metrics"]
    )
