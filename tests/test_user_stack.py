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
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs
from constructs import Construct

import iot_remote_access.constructs.aws as aws_constructs
from tests.support.aws_synth import synth_checked
from tests.support.aws_user_stacks import (
    CASES,
    PINNED,
    PlatformStack,
    platform_stack,
    reference_stack,
)
from tests.support.paths import REPO_ROOT

ENVIRONMENTS = {"no-env": None, "pinned-env": PINNED}


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
    stack, _, template_file = synth_checked(platform_stack(case, env), tmp_path)
    assert cdk.Token.is_unresolved(stack.account) is (env is None)
    if env is not None and case not in ("DevicePolicy", "PrivateCa", "CertificateInventory"):
        # The construct's own ARNs carry the pinned region (those three build none).
        assert _region_of(template_file)


@pytest.mark.parametrize("env_name", list(ENVIRONMENTS))
def test_reference_stack_with_every_part_passes_cdk_nag_and_the_guard(
    env_name: str, tmp_path: Path
) -> None:
    env = ENVIRONMENTS[env_name]
    _, template, template_file = synth_checked(reference_stack(env), tmp_path)
    template.resource_count_is("AWS::ACMPCA::CertificateAuthority", 1)
    template.resource_count_is("AWS::CloudTrail::Trail", 1)
    assert _region_of(template_file) is (env is not None)


@pytest.mark.parametrize("env_name", list(ENVIRONMENTS))
def test_the_harness_catches_an_unacknowledged_finding(env_name: str, tmp_path: Path) -> None:
    """A user resource cdk-nag objects to fails the same synthesis (the checks really run)."""

    def build(app: cdk.App) -> cdk.Stack:
        stack = PlatformStack(app, "Platform", env=ENVIRONMENTS[env_name])
        sqs.Queue(stack, "Plain")  # no TLS-only policy, no dead-letter queue
        return stack

    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed.*AwsSolutions-SQS4"):
        synth_checked(build, tmp_path)


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
    assert artifact["environment"] == f"aws://{PINNED.account}/{PINNED.region}"
    template = json.loads((outdir / "IotRemoteAccess.template.json").read_text())
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {"AWS::ACMPCA::CertificateAuthority", "AWS::IoT::Policy"} <= types
