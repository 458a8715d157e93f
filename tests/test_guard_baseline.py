"""`lint --baseline` / `--write-baseline`: adopt the guard on a legacy app, fail only on new findings.

The templates come from real CDK syntheses (aws-cdk-lib in process) of a legacy
app whose policies the guard objects to; a later synthesis adds resources before
them (every line shifts), which must not change a fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iot as iot
from aws_cdk import aws_sqs as sqs

from tests.support.cli_runner import run_cli
from tests.support.sarif_schema import sarif_errors

ENV = cdk.Environment(account="123456789012", region="eu-west-1")
ARN = "arn:aws:iot:eu-west-1:123456789012"


def _statement(action: str, resource: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def _synth(
    outdir: Path, *, queues: int = 0, extra: bool = False, telemetry: str = "dt/+/telemetry"
) -> Path:
    """The legacy app: ``queues`` resources before the policies shift every line."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Legacy", env=ENV)
    for index in range(queues):
        sqs.Queue(stack, f"AQueue{index}", enforce_ssl=True)
    iot.CfnPolicy(
        stack,
        "Fleet",
        policy_document={
            "Version": "2012-10-17",
            "Statement": [_statement("iot:Subscribe", f"{ARN}:topicfilter/{telemetry}")],
        },
    )
    iot.CfnPolicy(
        stack,
        "Admin",
        policy_document={"Version": "2012-10-17", "Statement": [_statement("iot:*", "*")]},
    )
    if extra:
        iot.CfnPolicy(
            stack,
            "NewDebug",
            policy_document={
                "Version": "2012-10-17",
                "Statement": [_statement("iot:Publish", f"{ARN}:topic/debug/*")],
            },
        )
    app.synth()
    return outdir


def _findings(result: Any) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return findings


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synth(tmp_path_factory.mktemp("legacy") / "cdk.out")


@pytest.fixture(scope="module")
def baseline(legacy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "iot-guard-baseline.json"
    result = run_cli("lint", "--write-baseline", str(path), "-f", "json", str(legacy))
    assert result.code == 0, result.stderr
    assert result.stderr == f"wrote 3 findings to the baseline {path}\n"
    return path


def test_written_baseline_lists_every_finding_sorted(baseline: Path) -> None:
    document = json.loads(baseline.read_text())
    assert document["version"] == 1
    rows = [(f["location"], f["ruleId"]) for f in document["findings"]]
    assert rows == [
        ("Legacy/Admin", "IRA001"),
        ("Legacy/Admin", "IRA008"),
        ("Legacy/Fleet", "IRA002"),
    ]
    assert all(len(f["fingerprint"]) == 64 for f in document["findings"])


def test_re_synth_with_shifted_lines_is_all_baselined(
    legacy: Path, baseline: Path, tmp_path: Path
) -> None:
    shifted = _synth(tmp_path / "cdk.out", queues=3)
    before = (legacy / "Legacy.template.json").read_text().splitlines()
    after = (shifted / "Legacy.template.json").read_text().splitlines()
    assert before.index('  "Fleet": {') != after.index('  "Fleet": {')  # the lines moved
    result = run_cli("lint", "--baseline", str(baseline), "-f", "json", str(shifted))
    assert result.code == 0, result.stdout
    assert {f["status"] for f in _findings(result)} == {"baselined"}
    first = run_cli("lint", "-f", "json", str(legacy))
    assert sorted(f["fingerprint"] for f in _findings(first)) == sorted(
        f["fingerprint"] for f in _findings(result)
    )


def test_only_a_new_finding_fails(baseline: Path, tmp_path: Path) -> None:
    grown = _synth(tmp_path / "cdk.out", queues=1, extra=True)
    result = run_cli("lint", "--baseline", str(baseline), "-f", "json", str(grown))
    assert result.code == 1
    open_ = [(f["policy"], f["ruleId"]) for f in _findings(result) if f["status"] == "open"]
    assert open_ == [("NewDebug", "IRA002")]
    table = run_cli("lint", "--baseline", str(baseline), str(grown))
    assert table.stdout.splitlines()[0] == "1 findings in 3 IoT policies (3 baselined, not listed)"
    assert "NewDebug (" in table.stdout and "Admin (" not in table.stdout
    sarif = json.loads(
        run_cli("lint", "--baseline", str(baseline), "-f", "sarif", str(grown)).stdout
    )
    assert sarif_errors(sarif) == []
    states = {
        r["locations"][0]["logicalLocations"][0]["name"]: r["baselineState"]
        for r in sarif["runs"][0]["results"]
    }
    assert states == {"Fleet": "unchanged", "Admin": "unchanged", "NewDebug": "new"}


def test_a_changed_statement_is_a_new_finding(baseline: Path, tmp_path: Path) -> None:
    changed = _synth(tmp_path / "cdk.out", telemetry="dt/#")
    result = run_cli("lint", "--baseline", str(baseline), "-f", "json", str(changed))
    assert result.code == 1
    assert [(f["policy"], f["status"]) for f in _findings(result) if f["policy"] == "Fleet"] == [
        ("Fleet", "open")
    ]


def test_fail_on_high_lets_medium_findings_pass(tmp_path: Path) -> None:
    connect = {
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/gw-1"}
        ]
    }
    (tmp_path / "gw-policy.json").write_text(json.dumps(connect))
    medium = run_cli("lint", str(tmp_path / "gw-policy.json"))
    high = run_cli("lint", "--fail-on", "high", str(tmp_path / "gw-policy.json"))
    never = run_cli("lint", "--fail-on", "none", str(tmp_path / "gw-policy.json"))
    assert (medium.code, high.code, never.code) == (1, 0, 0)


def test_policy_file_fingerprint_survives_reformatting(tmp_path: Path) -> None:
    policy = {"Statement": [_statement("iot:*", "*")]}
    path = tmp_path / "p-policy.json"
    path.write_text(json.dumps(policy))
    first = _findings(run_cli("lint", "-f", "json", str(path)))
    path.write_text("\n\n" + json.dumps(policy, indent=4, sort_keys=True))
    second = _findings(run_cli("lint", "-f", "json", str(path)))
    assert [f["fingerprint"] for f in first] == [f["fingerprint"] for f in second]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{broken", "not valid JSON"),
        ('["x"]', "not a JSON object; allowed: a file written by lint"),
        ('{"version": 2, "findings": []}', "version: 2; allowed: 1"),
        ('{"version": 1, "findings": {}}', "findings: an object of 0 keys; allowed: a list"),
        (
            '{"version": 1, "findings": [{"fingerprint": "abc"}]}',
            "findings[0].fingerprint: 'abc'; allowed: 64 lowercase hexadecimal digits",
        ),
        (
            '{"version": 1, "findings": [{"fingerprint": "' + "a" * 64 + '"}, {}]}',
            "findings[1].fingerprint: None; allowed",
        ),
    ],
)
def test_bad_baseline_is_one_line_exit_2(
    legacy: Path, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    result = run_cli("lint", "--baseline", str(path), str(legacy))
    assert result.code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --baseline: {path}: ") and message in line, line


def test_missing_baseline_and_both_options(legacy: Path, tmp_path: Path) -> None:
    missing = run_cli("lint", "--baseline", str(tmp_path / "nope.json"), str(legacy))
    assert missing.code == 2
    assert missing.stderr.startswith(f"error: --baseline: {tmp_path / 'nope.json'}: cannot read")
    both = run_cli("lint", "--baseline", "a.json", "--write-baseline", "b.json", str(legacy))
    assert (both.code, both.stderr.splitlines()) == (
        2,
        [
            "error: --write-baseline: given with --baseline; allowed: one of them "
            "(--write-baseline records every current finding)"
        ],
    )
