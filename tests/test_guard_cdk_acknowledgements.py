"""`lint` honours the acknowledgements a user's CDK app makes (real `cdk synth --debug`).

The user's app registers the guard as a validation plugin, builds one IoT policy
the guard objects to (a gateway that connects under a fixed client id, IRA004)
and acknowledges that finding with aws-cdk-lib's ``Validations`` API; cdk-nag 3's
aspect copies the acknowledgement into the template's ``cdk_nag`` Metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from iot_remote_access.core.policy_check import check_policy
from iot_remote_access.guard.acknowledgements import Acknowledgement, accepted_ids
from iot_remote_access.guard.assembly import SourceLine, app_frame
from tests.support.cli_runner import run_cli
from tests.support.paths import REPO_ROOT
from tests.support.sarif_schema import sarif_errors

REASON = "the legacy gateway connects as gateway-1 until its firmware update in 2027"
USER_APP = f"""
import aws_cdk as cdk
from aws_cdk import aws_iot as iot
from cdk_nag import WriteNagSuppressionsToCloudFormationAspect

from iot_remote_access.guard.cdk_plugin import IotPolicyGuard

app = cdk.App()
cdk.Validations.of(app).add_plugins(IotPolicyGuard())
cdk.Aspects.of(app).add(WriteNagSuppressionsToCloudFormationAspect())
stack = cdk.Stack(app, "UserStack", env=cdk.Environment(account="123456789012", region="eu-west-1"))
gateway = iot.CfnPolicy(stack, "LegacyGateway", policy_document={{
    "Version": "2012-10-17",
    "Statement": [{{
        "Effect": "Allow",
        "Action": "iot:Connect",
        "Resource": "arn:aws:iot:eu-west-1:123456789012:client/gateway-1",
        "Condition": {{"Bool": {{"iot:Connection.Thing.IsAttached": "true"}}}},
    }}],
}})
cdk.Validations.of(gateway).acknowledge(cdk.Acknowledgment(
    id="IotPolicyGuard::IRA004-connect-not-bound-to-thing",
    reason={REASON!r},
))
app.synth()
"""


@pytest.fixture(scope="module")
def user_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's app, synthesized by the real, pinned cdk CLI with --debug."""
    folder = tmp_path_factory.mktemp("user-app")
    (folder / "app.py").write_text(USER_APP)
    result = subprocess.run(
        [
            str(REPO_ROOT / "node_modules" / ".bin" / "cdk"),
            "synth",
            "--quiet",
            "--no-notices",
            "--debug",
            "--app",
            "python app.py",
            "--output",
            "cdk.out",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CDK_DISABLE_VERSION_CHECK": "1", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def _lint(folder: Path, *args: str) -> Any:
    cwd = os.getcwd()
    os.chdir(folder)  # relative SARIF uris, as in a user's repository
    try:
        return run_cli("lint", *args)
    finally:
        os.chdir(cwd)


def test_acknowledged_finding_does_not_fail_and_is_reported_with_its_reason(
    user_app: Path,
) -> None:
    result = _lint(user_app, "--format", "json", "cdk.out")
    assert result.code == 0, result.stdout + result.stderr
    (finding,) = json.loads(result.stdout)["findings"]
    assert (finding["ruleId"], finding["status"]) == ("IRA004", "acknowledged")
    assert finding["acknowledgement"]["reason"] == REASON
    assert finding["acknowledgement"]["id"] == "IotPolicyGuard::IRA004-connect-not-bound-to-thing"
    assert finding["constructPath"] == "UserStack/LegacyGateway"
    assert finding["stack"] == "UserStack"
    table = _lint(user_app, "cdk.out")
    assert (table.code, table.stdout) == (
        0,
        "1 IoT policies checked: no findings. (1 acknowledged, not listed)\n",
    )


def test_sarif_carries_the_acknowledgement_construct_path_and_source_line(
    user_app: Path,
) -> None:
    result = _lint(user_app, "--format", "sarif", "cdk.out")
    assert result.code == 0
    sarif = json.loads(result.stdout)
    assert sarif_errors(sarif) == []
    (finding,) = sarif["runs"][0]["results"]
    (suppression,) = finding["suppressions"]
    assert suppression == {
        "kind": "inSource",
        "status": "accepted",
        "justification": REASON,
        "properties": {
            "acknowledgedId": "IotPolicyGuard::IRA004-connect-not-bound-to-thing",
            "origin": "aws-cdk-lib acknowledgement on UserStack/LegacyGateway",
        },
    }
    (location,) = finding["locations"]
    assert location["logicalLocations"] == [
        {
            "name": "LegacyGateway",
            "kind": "resource",
            "fullyQualifiedName": "UserStack/LegacyGateway",
        }
    ]
    # --debug recorded where the app made the policy: the line of `iot.CfnPolicy(`.
    app_line = USER_APP.splitlines().index(
        next(line for line in USER_APP.splitlines() if "iot.CfnPolicy(" in line)
    )
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": "app.py"},
        "region": {"startLine": app_line + 1},
    }
    (related,) = finding["relatedLocations"]
    assert (
        related["physicalLocation"]["artifactLocation"]["uri"] == "cdk.out/UserStack.template.json"
    )


def test_cdk_nag_metadata_acknowledges_the_template_on_its_own(
    user_app: Path, tmp_path: Path
) -> None:
    """A template copied out of cdk.out (no manifest) keeps cdk-nag's record of it."""
    template = json.loads((user_app / "cdk.out" / "UserStack.template.json").read_text())
    nag = template["Resources"]["LegacyGateway"]["Metadata"]["cdk_nag"]
    assert nag["rules_to_suppress"] == [
        {"id": "IotPolicyGuard::IRA004-connect-not-bound-to-thing", "reason": REASON}
    ]
    shutil.copy(user_app / "cdk.out" / "UserStack.template.json", tmp_path / "stack.template.json")
    result = _lint(tmp_path, "-f", "json", "stack.template.json")
    assert result.code == 0, result.stdout
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["acknowledgement"]["origin"] == "cdk_nag metadata of LegacyGateway"
    # Without the acknowledgement the same template fails: it is what made the difference.
    del template["Resources"]["LegacyGateway"]["Metadata"]["cdk_nag"]
    (tmp_path / "stack.template.json").write_text(json.dumps(template))
    failed = _lint(tmp_path, "-f", "json", "stack.template.json")
    assert failed.code == 1
    assert [f["status"] for f in json.loads(failed.stdout)["findings"]] == ["open"]


def _assembly_copy(user_app: Path, target: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A copy of the user's cdk.out without cdk_nag Metadata; its metadata and template."""
    shutil.copytree(user_app / "cdk.out", target)
    template = json.loads((target / "UserStack.template.json").read_text())
    del template["Resources"]["LegacyGateway"]["Metadata"]["cdk_nag"]
    (target / "UserStack.template.json").write_text(json.dumps(template))
    metadata = json.loads((target / "UserStack.metadata.json").read_text())
    return target, metadata, template


def _origins(folder: Path) -> tuple[int, list[str]]:
    result = _lint(folder, "-f", "json", "cdk.out")
    findings = json.loads(result.stdout)["findings"] if result.stdout else []
    return result.code, [f.get("acknowledgement", {}).get("origin", "") for f in findings]


def test_acknowledgement_on_an_ancestor_and_in_the_validation_report(
    user_app: Path, tmp_path: Path
) -> None:
    """Each record of the acknowledgement suffices on its own; without any, the finding fails."""
    assembly, metadata, _ = _assembly_copy(user_app, tmp_path / "cdk.out")
    entries = metadata["/UserStack/LegacyGateway"]
    (ack,) = [e for e in entries if e["type"] == "aws:cdk:acknowledged-rules"]
    entries.remove(ack)
    metadata["/UserStack"].append(ack)  # as if acknowledged on the whole stack
    (assembly / "UserStack.metadata.json").write_text(json.dumps(metadata))
    assert _origins(tmp_path) == (0, ["aws-cdk-lib acknowledgement on UserStack"])
    metadata["/UserStack"].remove(ack)
    (assembly / "UserStack.metadata.json").write_text(json.dumps(metadata))
    assert _origins(tmp_path) == (
        0,
        ["validation report: acknowledged on UserStack/LegacyGateway"],
    )
    (assembly / "validation-report.json").unlink()
    assert _origins(tmp_path) == (1, [""])


# -- the matching rules, without a synth ------------------------------------------------

FIXED_CLIENT = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["iot:Connect", "iot:Publish"],
            "Resource": [
                "arn:aws:iot:eu-west-1:1:client/gateway-1",
                "arn:aws:iot:eu-west-1:1:topic/dt/#",
            ],
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        }
    ]
}


@pytest.mark.parametrize(
    "rule",
    [
        "IRA004",
        "IRA004-connect-not-bound-to-thing",
        "IotPolicyGuard::IRA004-connect-not-bound-to-thing",
        "IotPolicyGuard::IRA004",
        "IotPolicyGuard-IRA004",
    ],
)
def test_every_spelling_of_a_rule_id_acknowledges_it(rule: str) -> None:
    assert rule in accepted_ids("IRA004")
    findings = {f.rule_id: f for f in check_policy(FIXED_CLIENT)}
    ack = Acknowledgement(rule, "r", "test")
    assert ack.covers(findings["IRA004"]) and not ack.covers(findings["IRA002"])


def test_applies_to_narrows_an_acknowledgement_to_one_resource() -> None:
    (topic,) = [f for f in check_policy(FIXED_CLIENT) if f.rule_id == "IRA002"]
    exact = Acknowledgement("IRA002", "r", "t", ("Resource::arn:aws:iot:eu-west-1:1:topic/dt/#",))
    other = Acknowledgement("IRA002", "r", "t", ("Resource::arn:aws:iot:eu-west-1:1:topic/x",))
    assert exact.covers(topic) and not other.covers(topic)
    assert not Acknowledgement("AwsSolutions-IAM5", "r", "t").covers(topic)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (["...jsii runtime...", "<module> (/src/app.py:9)"], SourceLine("/src/app.py", 9)),
        (
            [
                "__init__ (/venv/lib/python3.12/site-packages/iot_remote_access/x.py:40)",
                "build (/src/stacks/fleet.py:21)",
            ],
            SourceLine("/src/stacks/fleet.py", 21),
        ),
        (["at new Fleet (/src/lib/fleet.ts:12:7)"], SourceLine("/src/lib/fleet.ts", 12)),
        (["(no user code in 10 frames, use --stack-trace-limit to capture more)"], None),
        ([42, None], None),
    ],
)
def test_the_app_frame_of_a_creation_stack(frames: list[Any], expected: SourceLine | None) -> None:
    assert app_frame(frames) == expected


def test_cdk_nag_2_suppressions_with_applies_to_and_stack_wide(tmp_path: Path) -> None:
    """cdk-nag 2's NagSuppressions format: per resource (narrowed by applies_to) and per stack."""
    topics = ["arn:aws:iot:eu-west-1:1:topic/dt/#", "arn:aws:iot:eu-west-1:1:topic/debug/*"]
    template = {
        "Metadata": {
            "cdk_nag": {"rules_to_suppress": [{"id": "IotPolicyGuard-IRA008", "reason": "all"}]}
        },
        "Resources": {
            "Telemetry": {
                "Type": "AWS::IoT::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [
                            {"Effect": "Allow", "Action": "iot:Publish", "Resource": topics}
                        ]
                    }
                },
                "Metadata": {
                    "cdk_nag": {
                        "rules_to_suppress": [
                            {
                                "id": "IRA002",
                                "reason": "fleet-wide telemetry sink",
                                "applies_to": [f"Resource::{topics[0]}"],
                            }
                        ]
                    }
                },
            },
            "Admin": {
                "Type": "AWS::IoT::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"}]
                    }
                },
            },
        },
    }
    (tmp_path / "legacy.template.json").write_text(json.dumps(template))
    result = _lint(tmp_path, "-f", "json", "legacy.template.json")
    assert result.code == 1
    statuses = {
        (f["policy"], f["ruleId"], f["resource"]): (f["status"], f.get("acknowledgement", {}))
        for f in json.loads(result.stdout)["findings"]
    }
    assert statuses == {
        ("Telemetry", "IRA002", topics[0]): (
            "acknowledged",
            {
                "id": "IRA002",
                "reason": "fleet-wide telemetry sink",
                "origin": "cdk_nag metadata of Telemetry",
            },
        ),
        ("Telemetry", "IRA002", topics[1]): ("open", {}),
        ("Admin", "IRA008", "*"): (
            "acknowledged",
            {
                "id": "IotPolicyGuard-IRA008",
                "reason": "all",
                "origin": "cdk_nag metadata of legacy.template.json",
            },
        ),
    }
