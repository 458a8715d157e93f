"""With aws-cdk-lib's built-in CloudFormation validation off (CDK_VALIDATION=false, what
`cdk synth --no-validation` sets), the checks the project relies on still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

APP = """
import json
import aws_cdk as cdk
from aws_cdk import aws_iot as iot
from iot_remote_access.guard.cdk_plugin import IotPolicyGuard
app = cdk.App()
cdk.Validations.of(app).add_plugins(IotPolicyGuard())
stack = cdk.Stack(app, "Loose", env=cdk.Environment(account="123456789012", region="eu-west-1"))
iot.CfnPolicy(stack, "Star", policy_document={
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
})
app.synth()
"""


def test_the_policy_guard_still_fails_synthesis(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", APP],
        cwd=REPO_ROOT,
        env={**os.environ, "CDK_VALIDATION": "false", "CDK_OUTDIR": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode != 0
    report = done.stdout + done.stderr
    assert "IotPolicyGuard" in report and "IRA001" in report
    written = json.loads((tmp_path / "out" / "validation-report.json").read_text())
    (guard,) = [r for r in written["pluginReports"] if r["pluginName"] == "IotPolicyGuard"]
    assert guard["conclusion"] == "failure"
