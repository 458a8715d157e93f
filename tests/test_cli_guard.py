"""`iot-remote-access lint` on files and `audit` on an account (moto)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.support.cli_runner import run_cli
from tests.support.paths import REPO_ROOT

THING = "${iot:Connection.Thing.ThingName}"
ARN = "arn:aws:iot:eu-west-1:123456789012"
COMPLIANT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{ARN}:client/{THING}",
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        },
        {
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": f"{ARN}:topic/dt/{THING}/telemetry",
        },
    ],
}
STAR = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}

YAML_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Env: {Type: String}
Resources:
  Fine:
    Type: AWS::IoT::Policy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: iot:Publish
            Resource: !Sub 'arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/dt/${!iot:Connection.Thing.ThingName}/telemetry'
  PlusFilter:
    Type: AWS::IoT::Policy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: [iot:Subscribe]
            Resource: !Join ['', ['arn:', !Ref 'AWS::Partition', ':iot:eu-west-1:1:topicfilter/dt/+/telemetry']]
  Bucket:
    Type: AWS::S3::Bucket
"""


@pytest.fixture(scope="module")
def synthesized_reference_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference app synthesized by the real, pinned cdk CLI (no AWS account)."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    result = subprocess.run(
        [str(cdk), "synth", "--quiet", "--no-notices", "--output", str(outdir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**__import__("os").environ, "CDK_DISABLE_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # cdk.json sets every recommended feature flag of the pinned aws-cdk-lib except
    # defaultCrossStackReferences (a string, for multi-stack apps; this app has one stack).
    assert "feature flags are not configured" not in result.stderr.replace(
        "1 feature flags are not configured", ""
    ), result.stderr[-2000:]
    return outdir


def test_cdk_cli_synthesizes_the_reference_stack(synthesized_reference_stack: Path) -> None:
    manifest = json.loads((synthesized_reference_stack / "manifest.json").read_text())
    assert "IotRemoteAccess" in manifest["artifacts"]
    template = json.loads(
        (synthesized_reference_stack / "IotRemoteAccess.template.json").read_text()
    )
    assert any(r["Type"] == "AWS::IoT::Policy" for r in template["Resources"].values())


def test_recommended_feature_flags_leave_no_legacy_bucket_acl(
    synthesized_reference_stack: Path,
) -> None:
    """With cdk.json's recommended flags, S3 access logs arrive by bucket policy, not ACL."""
    from cfnlint.api import ManualArgs, lint_file

    template_file = synthesized_reference_stack / "IotRemoteAccess.template.json"
    rule_ids = {m.rule.id for m in lint_file(template_file, config=ManualArgs())}
    assert "W3045" not in rule_ids
    template = json.loads(template_file.read_text())
    buckets = [r for r in template["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    assert buckets and not [b for b in buckets if "AccessControl" in b["Properties"]]


def test_lint_passes_the_synthesized_reference_stack(synthesized_reference_stack: Path) -> None:
    result = run_cli("lint", str(synthesized_reference_stack))
    assert result.code == 0, result.stdout + result.stderr
    assert "no findings" in result.stdout


def test_reach_proves_the_synthesized_reference_stack(synthesized_reference_stack: Path) -> None:
    """`reach` on what `cdk synth` wrote, through the installed console script."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "iot-remote-access"),
            "reach",
            str(synthesized_reference_stack),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no device reaches another's topics" in result.stdout
    assert "HIGH" not in result.stdout


def test_lint_fails_on_iot_star_and_plus_filter(tmp_path: Path) -> None:
    (tmp_path / "star.json").write_text(json.dumps(STAR))
    (tmp_path / "stack.yaml").write_text(YAML_TEMPLATE)
    result = run_cli(
        "lint", "--format", "json", str(tmp_path / "star.json"), str(tmp_path / "stack.yaml")
    )
    assert result.code == 1
    report = json.loads(result.stdout)
    assert report["policiesChecked"] == 3
    found = {(f["policy"], f["ruleId"]) for f in report["findings"]}
    assert found == {("star", "IRA001"), ("star", "IRA008"), ("PlusFilter", "IRA002")}


def test_lint_sarif_is_code_scanning_shaped(tmp_path: Path) -> None:
    (tmp_path / "stack.yaml").write_text(YAML_TEMPLATE)
    result = run_cli("lint", "-f", "sarif", str(tmp_path / "stack.yaml"))
    assert result.code == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    (finding,) = run["results"]
    assert rules[finding["ruleIndex"]]["id"] == finding["ruleId"] == "IRA002"
    assert finding["level"] == "error"
    location = finding["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"].endswith("stack.yaml")
    assert YAML_TEMPLATE.splitlines()[location["region"]["startLine"] - 1].strip() == "PlusFilter:"


def test_lint_table_for_people(tmp_path: Path) -> None:
    (tmp_path / "star.json").write_text(json.dumps(STAR))
    result = run_cli("lint", str(tmp_path / "star.json"))
    assert result.code == 1
    assert "IRA001 wildcard-action" in result.stdout
    assert "2 findings in 1 IoT policies" in result.stdout


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("{broken", "bad.json", r"bad\.json: not valid JSON: Expecting property name"),
        ("a: [", "bad.yaml", r"bad\.yaml: not valid YAML at line 1"),
        ('{"hello": 1}', "other.json", r"other\.json: neither a CloudFormation template"),
        (
            '{"Resources": {"P": {"Type": "AWS::IoT::Policy", "Properties": {}}}}',
            "t.json",
            r"t\.json: P: AWS::IoT::Policy without PolicyDocument",
        ),
        (
            '{"Statement": [{"Effect": "Permit", "Action": "iot:Connect", "Resource": "*"}]}',
            "p.json",
            r"p\.json: p: Statement\[0\]\.Effect: 'Permit'; allowed",
        ),
    ],
)
def test_lint_unreadable_input_exits_2_with_one_line(
    tmp_path: Path, content: str, name: str, message: str
) -> None:
    (tmp_path / name).write_text(content)
    result = run_cli("lint", str(tmp_path / name))
    assert result.code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert __import__("re").search(message, line), line


def test_lint_missing_path_and_folder_without_manifest(tmp_path: Path) -> None:
    missing = run_cli("lint", str(tmp_path / "nope.json"))
    assert (missing.code, missing.stderr.strip()) == (
        2,
        f"error: {tmp_path / 'nope.json'}: no such file or directory",
    )
    folder = run_cli("lint", str(tmp_path))
    assert folder.code == 2
    assert "not a cloud assembly (cdk.out): no manifest.json" in folder.stderr


def test_bad_option_is_one_line_exit_2() -> None:
    result = run_cli("lint", "--format", "xml", "x.json")
    assert result.code == 2
    assert result.stderr.splitlines() == [
        "error: Invalid value for '--format' / '-f': 'xml' is not one of 'table', 'json', 'sarif'."
    ]


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "iot-remote-access"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    assert "0.1.0" in result.stdout


# -- audit against moto's IoT ---------------------------------------------------


@pytest.fixture
def iot_account() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("iot", region_name="eu-west-1")
        yield client


def test_audit_clean_account_exits_0(iot_account: object) -> None:
    client = boto3.client("iot", region_name="eu-west-1")
    client.create_policy(policyName="device", policyDocument=json.dumps(COMPLIANT))
    result = run_cli("audit", "--region", "eu-west-1", "--format", "json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"policiesChecked": 1, "findings": []}


def test_audit_reads_every_policy_and_only_the_default_version(iot_account: object) -> None:
    client = boto3.client("iot", region_name="eu-west-1")
    for index in range(60):  # more than one ListPolicies page
        client.create_policy(policyName=f"ok-{index:02}", policyDocument=json.dumps(COMPLIANT))
    client.create_policy(policyName="legacy", policyDocument=json.dumps(STAR))
    # A compliant new default version fixes the policy; the old version is not in effect.
    client.create_policy(policyName="fixed", policyDocument=json.dumps(STAR))
    client.create_policy_version(
        policyName="fixed", policyDocument=json.dumps(COMPLIANT), setAsDefault=True
    )
    result = run_cli("audit", "--region", "eu-west-1", "--format", "json")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert report["policiesChecked"] == 62
    assert {(f["policy"], f["ruleId"]) for f in report["findings"]} == {
        ("legacy", "IRA001"),
        ("legacy", "IRA008"),
    }


def test_audit_without_region_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    result = run_cli("audit")
    assert result.code == 2
    assert result.stderr.splitlines() == [
        "error: --region: no region given and none configured for the profile"
    ]


def test_audit_refused_by_aws_is_one_line(iot_account: object) -> None:
    from unittest import mock

    from botocore.exceptions import ClientError

    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListPolicies"
    )
    with mock.patch("iot_remote_access.cli.guard.list_policies", side_effect=denied):
        result = run_cli("audit", "--region", "eu-west-1")
    assert result.code == 2
    assert result.stderr.splitlines() == ["error: AWS IoT refused the audit: AccessDeniedException"]
