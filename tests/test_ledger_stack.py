"""The reference stack with a ``ledger`` section: the AccessLedger, wired to every deciding function.

Real parts: the CDK synthesis with cdk-nag's AwsSolutions pack and the IoT policy guard
(``synth_checked`` fails on any unacknowledged finding), cfn-lint, and the repository's
own cdk.json settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iot_remote_access.settings import CONTEXT_KEY, FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack
from tests.support.aws_synth import cfn_lint_errors, synth_checked
from tests.support.paths import REPO_ROOT

WRITERS = (
    "tunnel_broker",
    "tunnel_sweeper",
    "cert_signer",
    "cert_confirm",
    "cert_planner",
    "cert_worker",
    "command_broker",
    "command_responses",
    "command_sweep",
    "command_fanout",
    "tunnel_metrics",  # operators' CloseTunnel calls
)


def _reference_settings() -> FleetSettings:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"][CONTEXT_KEY]
    assert "ledger" in context  # the reference settings carry a ledger section
    return FleetSettings.parse(context)


def _functions(template: Any) -> dict[str, dict[str, Any]]:
    """handler package -> the function's properties."""
    functions = template.find_resources("AWS::Lambda::Function")
    return {
        f["Properties"]["Handler"].split(".")[2]: f["Properties"]
        for f in functions.values()
        if f["Properties"]["Handler"].startswith("iot_remote_access.lambdas.")
    }


def _ref(value: Any) -> str:
    return str(value.get("Ref")) if isinstance(value, dict) else str(value)


def test_reference_stack_with_a_ledger_is_nag_and_cfn_lint_clean_and_wires_every_writer(
    tmp_path: Path,
) -> None:
    stack, template, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=_reference_settings()), tmp_path
    )
    assert cfn_lint_errors(template_file) == []
    assert isinstance(stack, IotRemoteAccessStack) and stack.access_ledger is not None
    (table_id,) = template.find_resources(
        "AWS::DynamoDB::Table",
        {"Properties": {"TimeToLiveSpecification": {"AttributeName": "expiresAt"}}},
    )
    (bucket,) = template.find_resources(
        "AWS::S3::Bucket", {"Properties": {"ObjectLockEnabled": True}}
    ).values()
    retention = bucket["Properties"]["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert retention == {"Days": 400, "Mode": "COMPLIANCE"}

    functions = _functions(template)
    for package in WRITERS:
        environment = functions[package]["Environment"]["Variables"]
        assert _ref(environment["LEDGER_TABLE"]) == table_id, package
        assert environment["LEDGER_ID"] == "access"
        assert environment["LEDGER_RETENTION_DAYS"] == "400"
    # Each writer's role may Query and PutItem on the ledger's partition, nothing more.
    appends = [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement.get("Action") == ["dynamodb:PutItem", "dynamodb:Query"]
        or statement.get("Action") == ["dynamodb:Query", "dynamodb:PutItem"]
    ]
    assert len(appends) == len(WRITERS)
    for statement in appends:
        assert statement["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["access"]}
        }
    # The sweeper's and the broker's closes are theirs to record, told apart by role.
    own = functions["tunnel_metrics"]["Environment"]["Variables"]["LEDGER_OWN_CLOSERS"]
    roles = [part["Fn::GetAtt"] for part in own["Fn::Join"][1] if isinstance(part, dict)]
    assert [
        functions[p]["Role"]["Fn::GetAtt"] for p in ("tunnel_broker", "tunnel_sweeper")
    ] == roles
    outputs = template.to_json()["Outputs"]
    assert {"LedgerTable", "LedgerAnchorBucket"} <= set(outputs)


@pytest.mark.parametrize(
    "settings",
    [FleetSettings(), FleetSettings.parse({"ledger": {"enabled": False}})],
    ids=["no-section", "disabled"],
)
def test_without_a_ledger_section_the_stack_has_no_ledger_and_functions_as_before(
    settings: FleetSettings, tmp_path: Path
) -> None:
    stack, template, _ = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings), tmp_path
    )
    assert isinstance(stack, IotRemoteAccessStack) and stack.access_ledger is None
    ledger_tables = [
        table
        for table in template.find_resources("AWS::DynamoDB::Table").values()
        if {"AttributeName": "ledger", "KeyType": "HASH"} in table["Properties"]["KeySchema"]
    ]
    assert ledger_tables == []
    assert (
        template.find_resources("AWS::S3::Bucket", {"Properties": {"ObjectLockEnabled": True}})
        == {}
    )
    for package, function in _functions(template).items():
        assert "LEDGER_TABLE" not in function.get("Environment", {}).get("Variables", {}), package


def test_a_retention_below_the_legal_minimum_is_refused_naming_the_field() -> None:
    from iot_remote_access.settings import SettingsError

    with pytest.raises(SettingsError) as refused:
        FleetSettings.parse({"ledger": {"retentionDays": 90}})
    (line,) = str(refused.value).splitlines()
    assert "ledger.retentionDays" in line and "90" in line
    assert "366" in line and "DPDP Rules 2025" in line


@pytest.mark.parametrize("package", WRITERS)
def test_each_writer_asset_imports_with_only_what_it_holds(package: str) -> None:
    """As Lambda loads it: the asset first on the path (staged as the construct stages it),
    boto3 and Powertools from the environment, nothing else of this package."""
    import os
    import subprocess
    import sys

    from iot_remote_access.constructs.aws.certificate_rotation import SHARED
    from iot_remote_access.constructs.aws.command_broker import SHARED_PACKAGES
    from iot_remote_access.constructs.aws.library_function import stage_handler_code

    shared = SHARED if package.startswith("cert_") else SHARED_PACKAGES.get(package, ["ledger"])
    staged = stage_handler_code(package, shared)
    probe = (
        f"import iot_remote_access.lambdas.{package}.handler;"
        "import iot_remote_access.lambdas.ledger.recording as r;"
        "print(r.Recorder.from_environment().enabled)"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=staged,
        env={**environment, "PYTHONPATH": str(staged), "AWS_DEFAULT_REGION": "eu-west-1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"  # no ledger configured: records nothing
