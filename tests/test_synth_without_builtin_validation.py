"""With aws-cdk-lib's built-in CloudFormation validation off (CDK_VALIDATION=false, what
`cdk synth --no-validation` sets, or cdk.json's
``iot-remote-access:builtinCloudFormationValidation: false``), the checks the project
relies on still run: the IoT policy guard and cdk-nag each still fail a synthesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iot_remote_access.stacks.builtin_validation import CONTEXT_KEY
from tests.support.paths import REPO_ROOT

GUARD_APP = """
import aws_cdk as cdk
from aws_cdk import aws_iot as iot
from iot_remote_access.guard.cdk_plugin import IotPolicyGuard
from iot_remote_access.stacks.builtin_validation import new_app
app = new_app()
cdk.Validations.of(app).add_plugins(IotPolicyGuard())
stack = cdk.Stack(app, "Loose", env=cdk.Environment(account="123456789012", region="eu-west-1"))
iot.CfnPolicy(stack, "Star", policy_document={
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
})
app.synth()
"""

# The pack the reference stack registers, on a queue without encryption or SSL (AwsSolutions-SQS...).
NAG_APP = """
import aws_cdk as cdk
from aws_cdk import aws_sqs as sqs
from iot_remote_access.guard.nag import aws_solutions_plugins
from iot_remote_access.stacks.builtin_validation import new_app
app = new_app()
stack = cdk.Stack(app, "Loose", env=cdk.Environment(account="123456789012", region="eu-west-1"))
sqs.CfnQueue(stack, "Plain")
cdk.Validations.of(app).add_plugins(*aws_solutions_plugins(stack))
app.synth()
"""

# Both ways of turning it off: aws-cdk-lib's variable and the library's documented setting.
OFF = [
    pytest.param({"CDK_VALIDATION": "false"}, id="CDK_VALIDATION"),
    pytest.param({"CDK_CONTEXT_JSON": json.dumps({CONTEXT_KEY: False})}, id="context"),
]


def _synth(
    app: str, off: dict[str, str], outdir: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, object]]]:
    done = subprocess.run(
        [sys.executable, "-c", app],
        cwd=REPO_ROOT,
        env={**os.environ, **off, "CDK_OUTDIR": str(outdir)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    written = json.loads((outdir / "validation-report.json").read_text())
    return done, {r["pluginName"]: r for r in written["pluginReports"]}


@pytest.mark.parametrize("off", OFF)
def test_the_policy_guard_still_fails_synthesis(tmp_path: Path, off: dict[str, str]) -> None:
    done, reports = _synth(GUARD_APP, off, tmp_path / "out")
    assert done.returncode != 0
    report = done.stdout + done.stderr
    assert "IotPolicyGuard" in report and "IRA001" in report
    assert reports["IotPolicyGuard"]["conclusion"] == "failure"
    assert "CloudFormation Validate" not in reports


@pytest.mark.parametrize("off", OFF)
def test_cdk_nag_still_fails_synthesis(tmp_path: Path, off: dict[str, str]) -> None:
    done, reports = _synth(NAG_APP, off, tmp_path / "out")
    assert done.returncode != 0
    assert reports["AwsSolutions"]["conclusion"] == "failure"
    rules = {v["ruleName"] for v in reports["AwsSolutions"]["violations"]}  # type: ignore[attr-defined]
    assert any(rule.startswith("AwsSolutions-SQS") for rule in rules), rules
    assert "CloudFormation Validate" not in reports
