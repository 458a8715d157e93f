"""LambdaOptions: VPC, reserved concurrency and dead-letter queue on every library function.

Every construct that creates Lambda functions is composed into a user's stack
(explicit ``env``, the team's own key, topic, an existing VPC and security group)
with ``lambda_options`` set. cdk-nag's NIST 800-53 R5 and HIPAA packs (the real
packs, as validation plugins) then report none of their Lambda placement rules
(VPC, concurrency, dead-letter queue) on any library function, while the same
stack without the options reports each of them on each function: the checks see
the functions. AwsSolutions and the IoT policy guard stay clean with the options.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template
from cdk_nag import HIPAASecurityChecks, NIST80053R5Checks

from iot_remote_access.constructs.aws import (
    AccessLedger,
    CertificateRotation,
    CommandBroker,
    DevicePolicy,
    IncidentClocks,
    LambdaOptions,
    LibraryFunction,
    SecureTunneling,
    SecurityMonitoring,
    TunnelAlarms,
)
from iot_remote_access.settings import FleetSettings
from tests.support.aws_synth import synth_checked, unacknowledged, validation_report
from tests.support.aws_user_stacks import CA_ARN, PINNED, PlatformStack, existing_vpc

#: The packs' Lambda rules these options answer (rule name suffixes).
PLACEMENT_RULES = ("LambdaConcurrency", "LambdaDLQ", "LambdaInsideVPC")
PACKS = ("NIST.800.53.R5", "HIPAA.Security")


def _compose(stack: PlatformStack, options: dict[str, LambdaOptions | None]) -> None:
    """Every construct that creates functions, each with its options (or none)."""
    policy = DevicePolicy(stack, "Fleet")
    certificates = FleetSettings.parse({"certificates": {"caArn": CA_ARN}}).certificates
    SecureTunneling(
        stack,
        "Tunnels",
        device_policy=policy,
        encryption_key=stack.key,
        lambda_options=options["SecureTunneling"],
    )
    TunnelAlarms(
        stack,
        "TunnelAlarms",
        alarm_topic=stack.alerts,
        encryption_key=stack.key,
        lambda_options=options["TunnelAlarms"],
    )
    CertificateRotation(
        stack,
        "Rotation",
        device_policy=policy,
        settings=certificates,
        alarm_topic=stack.alerts,
        encryption_key=stack.key,
        audit=False,
        lambda_options=options["CertificateRotation"],
    )
    SecurityMonitoring(
        stack,
        "Monitoring",
        device_access=policy,
        alarm_topic=stack.alerts,
        encryption_key=stack.key,
        lambda_options=options["SecurityMonitoring"],
    )
    ledger = AccessLedger(
        stack,
        "Ledger",
        key=stack.key,
        alarm_topic=stack.alerts,
        lambda_options=options["AccessLedger"],
    )
    IncidentClocks(
        stack,
        "Incidents",
        ledger=ledger,
        alarm_topic=stack.alerts,
        lambda_options=options["IncidentClocks"],
    )
    CommandBroker(
        stack,
        "Commands",
        encryption_key=stack.key,
        device_policy=policy,
        lambda_options=options["CommandBroker"],
    )


CONSTRUCTS = (
    "SecureTunneling",
    "TunnelAlarms",
    "CertificateRotation",
    "SecurityMonitoring",
    "AccessLedger",
    "IncidentClocks",
    "CommandBroker",
)


def _options(stack: PlatformStack) -> dict[str, LambdaOptions | None]:
    """Each way a team brings its options: new or existing groups and queues, subnets."""
    vpc = existing_vpc(stack)
    existing_group = ec2.SecurityGroup.from_security_group_id(
        stack, "ExistingGroup", "sg-0123456789abcdef0"
    )
    own_group = ec2.SecurityGroup(
        stack, "FunctionsGroup", vpc=vpc, description="platform - the library functions"
    )
    team_dlq = sqs.Queue(
        stack,
        "TeamDeadLetters",
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=stack.key,
        enforce_ssl=True,
    )
    cdk.Validations.of(team_dlq).acknowledge(
        cdk.Acknowledgment(
            id="AwsSolutions::AwsSolutions-SQS3", reason="the team's dead-letter queue"
        )
    )
    base: dict[str, Any] = {"vpc": vpc, "reserved_concurrent_executions": 5}
    return {
        "SecureTunneling": LambdaOptions(
            **base, security_groups=[existing_group], dead_letter_queue_enabled=True
        ),
        "TunnelAlarms": LambdaOptions(**base, dead_letter_queue=team_dlq),
        "CertificateRotation": LambdaOptions(
            **base,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[own_group],
            dead_letter_queue=team_dlq,
        ),
        "SecurityMonitoring": LambdaOptions(**base, dead_letter_queue_enabled=True),
        "AccessLedger": LambdaOptions(**base, dead_letter_queue_enabled=True),
        "IncidentClocks": LambdaOptions(**base, dead_letter_queue=team_dlq),
        "CommandBroker": LambdaOptions(
            **base, security_groups=[own_group, existing_group], dead_letter_queue=team_dlq
        ),
    }


def _library_functions(stack: cdk.Stack) -> list[LibraryFunction]:
    return [c for c in stack.node.find_all() if isinstance(c, LibraryFunction)]


def _placement_findings(outdir: Path) -> list[tuple[str, str]]:
    """(rule, resource path) for every NIST/HIPAA Lambda placement finding."""
    report = validation_report(outdir)
    found = []
    for plugin in report["pluginReports"]:
        for violation in plugin["violations"]:
            rule = violation["ruleName"]
            if rule.endswith(PLACEMENT_RULES) and rule.startswith(PACKS):
                found += [(rule, v["constructPath"]) for v in violation["violatingConstructs"]]
    return found


def _synth_with_packs(
    tmp_path: Path, with_options: bool
) -> tuple[cdk.Stack, list[tuple[str, str]]]:
    app = cdk.App(outdir=str(tmp_path))
    stack = _PackStack(app, "Platform", with_options=with_options)
    with pytest.raises(RuntimeError, match=r"^ValidationFailed"):
        # The packs find plenty outside these rules (their own opinions on the team's
        # key, topic, tables...): the synthesis fails, and the report is read.
        app.synth()
    return stack, _placement_findings(tmp_path)


class _PackStack(PlatformStack):
    """The user's stack with the NIST 800-53 R5 and HIPAA packs in place of AwsSolutions."""

    def __init__(self, scope: cdk.App, construct_id: str, *, with_options: bool) -> None:
        super().__init__(scope, construct_id, env=PINNED, checks=False)
        options = _options(self) if with_options else dict.fromkeys(CONSTRUCTS)
        _compose(self, options)
        cdk.Validations.of(self).add_plugins(NIST80053R5Checks(self), HIPAASecurityChecks(self))


class _OptionsStack(PlatformStack):
    """The user's stack (AwsSolutions and the guard on) with every option set."""

    def __init__(self, scope: cdk.App, construct_id: str) -> None:
        super().__init__(scope, construct_id, env=PINNED)
        _compose(self, _options(self))


def test_with_the_options_the_packs_find_no_lambda_placement_gap(tmp_path: Path) -> None:
    stack, findings = _synth_with_packs(tmp_path, with_options=True)
    functions = _library_functions(stack)
    # 2 + 1 + 4 + 2 + 1 + 2 + 4: CommandBroker has four (broker, responses, sweep, fan-out)
    assert len(functions) == 16
    assert findings == []


def test_without_the_options_the_packs_flag_every_function(tmp_path: Path) -> None:
    stack, findings = _synth_with_packs(tmp_path, with_options=False)
    functions = _library_functions(stack)
    flagged = {(rule.split("-", 1)[1], path) for rule, path in findings}
    for function in functions:
        path = f"{function.function.node.path}/Resource"
        # The ledger's anchor and the incident clocks keep their concurrency of 1.
        rules = {"LambdaDLQ", "LambdaInsideVPC"}
        if not path.startswith(("Platform/Ledger/", "Platform/Incidents/")):
            rules.add("LambdaConcurrency")
        assert {(rule, path) for rule in rules} <= flagged, path


def test_with_the_options_aws_solutions_and_the_guard_stay_clean(tmp_path: Path) -> None:
    stack, template, _ = synth_checked(lambda app: _OptionsStack(app, "Platform"), tmp_path)
    assert unacknowledged(validation_report(tmp_path)) == []
    functions = template.find_resources("AWS::Lambda::Function")
    library = {
        stack.resolve((f.function.node.default_child).logical_id)  # type: ignore[union-attr]
        for f in _library_functions(stack)
    }
    for logical_id in library:
        properties = functions[logical_id]["Properties"]
        assert properties["VpcConfig"]["SubnetIds"] == [
            "subnet-0aaa1111bbbb2222c",
            "subnet-0ddd3333eeee4444f",
        ]
        assert properties["DeadLetterConfig"]["TargetArn"]
        expected = 1 if logical_id.startswith(("LedgerAnchor", "Incidents")) else 5
        assert properties["ReservedConcurrentExecutions"] == expected, logical_id
    # New queues are encrypted with the team's key and refuse plain HTTP.
    new_queues = {
        name: queue
        for name, queue in template.find_resources("AWS::SQS::Queue").items()
        if re.match(
            r"^(TunnelsBroker|TunnelsSweeper|MonitoringDetector|MonitoringAlarmEvents|LedgerAnchor)"
            r"DeadLetters",
            name,
        )
    }
    assert len(new_queues) == 2 + 2 + 1  # tunnels (2), monitoring (2), ledger (1)
    for name, queue in new_queues.items():
        # The team's key where the construct has one; the ledger's anchor has none.
        expected = "SqsManagedSseEnabled" if name.startswith("Ledger") else "KmsMasterKeyId"
        assert queue["Properties"][expected], name
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_a_function_sends_failures_to_its_queue_only_with_the_grant() -> None:
    stack = PlatformStack(cdk.App(), "Platform", env=PINNED)
    queue = sqs.Queue(stack, "Dlq", encryption_master_key=stack.key, enforce_ssl=True)
    function = LibraryFunction(
        stack,
        "Sweeper",
        handler_package="tunnel_sweeper",
        description="d",
        encryption_key=stack.key,
        lambda_options=LambdaOptions(dead_letter_queue=queue),
    )
    assert function.dead_letter_queue is queue
    policy = Template.from_stack(stack).find_resources("AWS::IAM::Policy")
    actions = {
        action
        for p in policy.values()
        for statement in p["Properties"]["PolicyDocument"]["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert "sqs:SendMessage" in actions
    # The queue's key: exactly what sending an encrypted message takes, no wildcards.
    assert {"kms:GenerateDataKey", "kms:Decrypt"} <= actions
    assert not {a for a in actions if a.startswith("kms:") and "*" in a}


def test_defaults_are_unchanged_no_vpc_no_queue_no_reservation() -> None:
    stack = cdk.Stack(cdk.App(), "Platform", env=PINNED)
    function = LibraryFunction(stack, "Sweeper", handler_package="tunnel_sweeper", description="d")
    properties = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    (only,) = properties.values()
    assert {"VpcConfig", "DeadLetterConfig", "ReservedConcurrentExecutions"}.isdisjoint(
        only["Properties"]
    )
    assert function.dead_letter_queue is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"vpc": "vpc-0a1b"},
            r"^LambdaOptions vpc: got str 'vpc-0a1b'; allowed: ec2\.IVpc or None$",
        ),
        (
            {"security_groups": "sg-1"},
            r"^LambdaOptions security_groups: got str 'sg-1'; allowed: a list of ec2\.ISecurityGroup or None$",
        ),
        (
            {"reserved_concurrent_executions": "5"},
            r"^LambdaOptions reserved_concurrent_executions: got str '5'; allowed: int or a CDK number token or None$",
        ),
        (
            {"dead_letter_queue": "arn:aws:sqs:eu-central-1:123456789012:dlq"},
            r"^LambdaOptions dead_letter_queue: got str 'arn:aws:sqs:.*'; allowed: sqs\.IQueue or None$",
        ),
        (
            {"dead_letter_queue_enabled": "yes"},
            r"^LambdaOptions dead_letter_queue_enabled: got str 'yes'; allowed: bool$",
        ),
        (
            {"vpc_subnets": ["subnet-1"]},
            r"^LambdaOptions vpc_subnets: got list \['subnet-1'\]; allowed: aws_ec2\.SubnetSelection or None$",
        ),
    ],
)
def test_a_wrong_type_fails_naming_the_option(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        LambdaOptions(**arguments)


def test_a_construct_refuses_options_of_the_wrong_type() -> None:
    stack = cdk.Stack(cdk.App(), "Platform")
    with pytest.raises(
        TypeError, match=r"^TunnelAlarms lambda_options: got dict \{'vpc': None\}; allowed: "
    ):
        TunnelAlarms(stack, "Alarms", lambda_options={"vpc": None})  # type: ignore[arg-type]


def test_options_that_cannot_work_fail_naming_the_field() -> None:
    stack = cdk.Stack(cdk.App(), "Platform")
    group = ec2.SecurityGroup.from_security_group_id(stack, "G", "sg-0123456789abcdef0")
    with pytest.raises(ValueError, match=r"^LambdaOptions security_groups: set without vpc"):
        LambdaOptions(security_groups=[group])
    with pytest.raises(ValueError, match=r"^LambdaOptions reserved_concurrent_executions: 0 "):
        LambdaOptions(reserved_concurrent_executions=0)


def test_in_a_vpc_the_role_may_manage_network_interfaces_acknowledged_with_a_reason(
    tmp_path: Path,
) -> None:
    def build(app: cdk.App) -> cdk.Stack:
        stack = PlatformStack(app, "Platform", env=PINNED)
        LibraryFunction(
            stack,
            "Sweeper",
            handler_package="tunnel_sweeper",
            description="d",
            encryption_key=stack.key,
            lambda_options=LambdaOptions(vpc=existing_vpc(stack)),
        )
        return stack

    _, template, _ = synth_checked(build, tmp_path)
    report = validation_report(tmp_path)
    assert unacknowledged(report) == []
    (suppressed,) = [
        v
        for plugin in report["pluginReports"]
        for v in plugin.get("suppressedViolations", [])
        if v["ruleName"] == "AwsSolutions-IAM5[Resource::*]"
    ]
    assert "ec2:CreateNetworkInterface" in suppressed["reason"]
    statements = [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (eni,) = [s for s in statements if s.get("Sid") == "ManageFunctionNetworkInterfaces"]
    assert eni["Resource"] == "*" and "ec2:CreateNetworkInterface" in eni["Action"]
    # Not AWS's managed policy: it would also allow writing to every log group.
    assert "AWSLambdaVPCAccessExecutionRole" not in json.dumps(template.to_json())


def test_the_docstring_example_runs_in_a_user_stack() -> None:
    import inspect
    import textwrap

    doc = inspect.getdoc(LambdaOptions) or ""
    code = textwrap.dedent(doc.partition("Example::\n")[2])
    stack = cdk.Stack(cdk.App(), "Example", env=PINNED)
    exec(compile(code, "<LambdaOptions example>", "exec"), {"stack": stack})
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    assert len(functions) == 2
    assert all("VpcConfig" in f["Properties"] for f in functions.values())


def test_the_user_documentation_examples_run() -> None:
    """docs/construct-api.md's Lambda options and ``from_*`` examples, as written."""
    from aws_cdk import aws_logs as logs

    from tests.support.paths import REPO_ROOT

    text = (REPO_ROOT / "docs" / "construct-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    examples = [b for b in blocks if "LambdaOptions(" in b or "from_trail_attributes" in b]
    assert len(examples) == 2
    for code in examples:
        stack = cdk.Stack(cdk.App(), "Docs", env=PINNED)
        scope = {"stack": stack, "policy": DevicePolicy(stack, "Fleet"), "logs": logs}
        exec(compile(code, "<docs/construct-api.md>", "exec"), scope)
        assert Template.from_stack(stack).find_resources("AWS::Lambda::Function")
