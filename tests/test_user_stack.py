"""Every AWS construct and the reference stack synthesize where users deploy them.

Each construct is composed into a user's own stack (``tests/support/aws_user_stacks``)
and synthesized twice: without ``env`` and with an explicit account and region, the
normal production pattern. ``app.synth()`` runs cdk-nag's AwsSolutions pack and the
IoT policy guard as validation plugins and raises on any unacknowledged error, so a
passing case proves both find nothing. The reference app is also synthesized once by
the real, pinned ``cdk`` CLI with an explicit account and region.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iot as iot
from aws_cdk import aws_sqs as sqs
from constructs import Construct

import iot_remote_access.constructs.aws as aws_constructs
from iot_remote_access.constructs.aws import nag
from tests.support.aws_synth import (
    acknowledged,
    synth_checked,
    unacknowledged,
    validation_report,
)
from tests.support.aws_user_stacks import (
    CASES,
    PINNED,
    PlatformStack,
    platform_stack,
    reference_stack,
)
from tests.support.paths import REPO_ROOT

ENVIRONMENTS = {"no-env": None, "pinned-env": PINNED}


PINNED_ENVIRONMENT = f"aws://{PINNED.account}/{PINNED.region}"


def _region_of(template_file: Path) -> bool:
    """Whether the pinned region was written into the template (the env took effect)."""
    return PINNED.region is not None and PINNED.region in template_file.read_text()


def test_every_aws_construct_has_a_user_stack_case() -> None:
    exported = {
        name
        for name, value in vars(aws_constructs).items()
        if inspect.isclass(value) and issubclass(value, Construct)
    }
    assert exported, "no constructs found in iot_remote_access.constructs.aws"
    covered = {case.split("(")[0] for case in CASES}
    assert exported - covered == set(), "add a case to tests/support/aws_user_stacks.py"


@pytest.mark.parametrize("env_name", list(ENVIRONMENTS))
@pytest.mark.parametrize("case", list(CASES))
def test_construct_in_a_user_stack_passes_cdk_nag_and_the_guard(
    case: str, env_name: str, tmp_path: Path
) -> None:
    env = ENVIRONMENTS[env_name]
    stack, _, _ = synth_checked(platform_stack(case, env), tmp_path)
    report = validation_report(tmp_path)
    assert unacknowledged(report) == []
    assert {
        rule: reason for rule, reason in acknowledged(report).items() if not reason.strip()
    } == {}
    expected = "aws://unknown-account/unknown-region" if env is None else PINNED_ENVIRONMENT
    assert stack.environment == expected


@pytest.mark.parametrize("env_name", list(ENVIRONMENTS))
def test_reference_stack_with_every_part_passes_cdk_nag_and_the_guard(
    env_name: str, tmp_path: Path
) -> None:
    env = ENVIRONMENTS[env_name]
    _, template, template_file = synth_checked(reference_stack(env), tmp_path)
    report = validation_report(tmp_path)
    assert unacknowledged(report) == []
    assert all(reason.strip() for reason in acknowledged(report).values())
    template.resource_count_is("AWS::ACMPCA::CertificateAuthority", 1)
    template.resource_count_is("AWS::CloudTrail::Trail", 1)
    assert _region_of(template_file) is (env is not None)


FOREIGN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": "arn:aws:iot:eu-central-1:123456789012:topicfilter/plant/+/up",
        }
    ],
}


@pytest.mark.parametrize(
    ("add", "rule"),
    [
        # no TLS-only policy, no dead-letter queue
        (lambda stack: sqs.Queue(stack, "Plain"), "AwsSolutions-SQS4"),
        (
            lambda stack: iot.CfnPolicy(stack, "Foreign", policy_document=FOREIGN_POLICY),
            "IRA002",
        ),
    ],
    ids=["cdk-nag", "guard"],
)
@pytest.mark.parametrize("env_name", list(ENVIRONMENTS))
def test_the_harness_catches_an_unacknowledged_finding(
    env_name: str, add: Callable[[cdk.Stack], object], rule: str, tmp_path: Path
) -> None:
    """A user resource either check objects to fails the same synthesis (both really run)."""

    def build(app: cdk.App) -> cdk.Stack:
        stack = PlatformStack(app, "Platform", env=ENVIRONMENTS[env_name])
        add(stack)
        return stack

    with pytest.raises(RuntimeError, match=rf"(?s)ValidationFailed.*{rule}"):
        synth_checked(build, tmp_path)
    assert any(rule in finding for finding in unacknowledged(validation_report(tmp_path)))


USER_APP = """
import aws_cdk as cdk
from iot_remote_access.settings import CONTEXT_KEY, FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack

app = cdk.App()
env = cdk.Environment(
    account=app.node.try_get_context("account"), region=app.node.try_get_context("region")
)
settings = FleetSettings.parse(app.node.try_get_context(CONTEXT_KEY))
IotRemoteAccessStack(app, "IotRemoteAccess", settings=settings, env=env)
app.synth()
"""


def test_cdk_cli_synthesizes_the_reference_stack_with_a_pinned_env(tmp_path: Path) -> None:
    """The real, pinned cdk CLI runs a user's app that pins env from context (no AWS call)."""
    app_file = tmp_path / "user_app.py"
    app_file.write_text(USER_APP)
    outdir = tmp_path / "cdk.out"
    result = subprocess.run(
        [
            str(REPO_ROOT / "node_modules" / ".bin" / "cdk"),
            "synth",
            "--quiet",
            "--no-notices",
            "--app",
            f"python {app_file}",
            "--context",
            f"account={PINNED.account}",
            "--context",
            f"region={PINNED.region}",
            "--output",
            str(outdir),
        ],
        cwd=REPO_ROOT,  # cdk.json's context: the reference settings, certificates on
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CDK_DISABLE_VERSION_CHECK": "1", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((outdir / "manifest.json").read_text())
    artifact = manifest["artifacts"]["IotRemoteAccess"]
    assert artifact["environment"] == PINNED_ENVIRONMENT
    template = json.loads((outdir / "IotRemoteAccess.template.json").read_text())
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {"AWS::ACMPCA::CertificateAuthority", "AWS::IoT::Policy"} <= types


# -- acknowledgements follow the resource ------------------------------------------------


def _iot_things(stack: cdk.Stack) -> str:
    return stack.format_arn(
        service="iot",
        resource="thing",
        resource_name="*",
        arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
    )


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        (None, "arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:thing/*"),
        (PINNED, "arn:<AWS::Partition>:iot:eu-central-1:123456789012:thing/*"),
    ],
)
def test_acknowledgement_names_the_arn_as_synthesized(
    env: cdk.Environment | None, shown: str
) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=env)
    assert nag.finding_resource(stack, _iot_things(stack)) == shown


def test_flatten_writes_intrinsics_as_cdk_nag_does() -> None:
    assert nag.flatten({"Fn::Join": ["", [{"Fn::GetAtt": ["Table1", "Arn"]}, "/index/*"]]}) == (
        "<Table1.Arn>/index/*"
    )
    assert nag.flatten({"Fn::Sub": "arn:${AWS::Partition}:s3:::b/*"}) == (
        "arn:<AWS::Partition>:s3:::b/*"
    )
    assert nag.flatten({"Fn::ImportValue": "Shared-Bucket"}) == "Shared-Bucket"
    assert nag.flatten({"Fn::If": ["C", "a", "b"]}) == '{"Fn::If":["C","a","b"]}'


def test_acknowledgements_refuse_exact_arns_and_missing_reasons() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=PINNED)
    exact = stack.format_arn(service="iot", resource="thing", resource_name="sensor-1")
    with pytest.raises(
        ValueError,
        match=r"arns: 'arn:<AWS::Partition>:iot:eu-central-1:.*"
        r"has no wildcard; allowed: wildcard ARNs only",
    ):
        nag.acknowledge_wildcard_resources(stack, "why", [exact])
    with pytest.raises(ValueError, match=r"actions: 'kms:Decrypt' has no wildcard"):
        nag.acknowledge_wildcard_actions(stack, "why", ["kms:Decrypt"])
    with pytest.raises(ValueError, match=r"reason: empty for IAM5"):
        nag.acknowledge_wildcard_resources(stack, " ", [_iot_things(stack)])


def test_pinned_env_acknowledgements_name_the_pinned_arns_with_reasons(tmp_path: Path) -> None:
    """Defect 10: with env, the rotation grants are acknowledged under their real ARNs."""
    synth_checked(platform_stack("CertificateRotation(own CA)", PINNED), tmp_path)
    reasons = acknowledged(validation_report(tmp_path))
    pinned = "arn:<AWS::Partition>:iot:eu-central-1:123456789012"
    for resource in ("cert/*", "thing/*", "topic/plant/*/down", "topic/rot/*/certificate"):
        assert reasons[f"AwsSolutions-IAM5[Resource::{pinned}:{resource}]"].strip()
    assert not [rule for rule in reasons if "<AWS::Region>" in rule or "<AWS::AccountId>" in rule]
