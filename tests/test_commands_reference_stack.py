"""The reference stack with cdk.json's settings (a commands catalogue): cdk-nag, the IoT policy
guard and cfn-lint clean, the command functions' audit records exported to the SIEM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iot_remote_access.settings import CONTEXT_KEY, FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack
from tests.support.aws_synth import cfn_lint_errors, synth_checked
from tests.support.cli_runner import run_cli
from tests.support.paths import REPO_ROOT


def _reference_settings() -> FleetSettings:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"][CONTEXT_KEY]
    return FleetSettings.parse(context)


def _resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_the_reference_settings_deploy_the_command_broker_clean(tmp_path: Path) -> None:
    settings = _reference_settings()
    assert settings.commands.enabled and settings.commands.catalogue
    stack, _, template_file = synth_checked(
        lambda app: IotRemoteAccessStack(app, "Ref", settings=settings), tmp_path
    )  # raises unless cdk-nag's AwsSolutions pack and the IoT policy guard pass
    assert cfn_lint_errors(template_file) == []
    # The guard's own CLI over the synthesized template: no wildcard in any IoT policy.
    linted = run_cli("lint", str(template_file))
    assert linted.code == 0, linted
    template = json.loads(template_file.read_text())
    outputs = template["Outputs"]
    assert {"CommandBrokerUrl", "CommandOperatorPolicyArn"} <= set(outputs)
    assert isinstance(stack, IotRemoteAccessStack) and stack.commands is not None
    audit_groups = {
        stack.get_logical_id(f.log_group.node.default_child)  # type: ignore[arg-type]
        for f in (
            stack.commands.broker,
            stack.commands.responder,
            stack.commands.sweeper,
            stack.commands.dispatcher,
        )
    }
    exported = {
        json.dumps(filter_["Properties"]["LogGroupName"])
        for filter_ in _resources(template, "AWS::Logs::SubscriptionFilter").values()
    }
    for group in audit_groups:
        assert any(group in text for text in exported), group
    (rule,) = [
        r
        for r in _resources(template, "AWS::Events::Rule").values()
        if "time out commands" in r["Properties"].get("Description", "")
    ]
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    (device_policy,) = _resources(template, "AWS::IoT::Policy").values()
    document = json.dumps(device_policy["Properties"]["PolicyDocument"])
    assert "cmd/${iot:Connection.Thing.ThingName}/responses" in document


def test_without_a_commands_section_the_stack_has_no_broker(tmp_path: Path) -> None:
    stack = IotRemoteAccessStack(
        __import__("aws_cdk").App(), "Plain", settings=FleetSettings(), checks=False
    )
    assert stack.commands is None


def test_a_ledger_makes_every_command_function_a_writer(tmp_path: Path) -> None:
    import aws_cdk as cdk

    from iot_remote_access.constructs.aws import AccessLedger, CommandBroker
    from iot_remote_access.guard.cdk_plugin import IotPolicyGuard
    from iot_remote_access.guard.nag import aws_solutions_plugins

    def build(app: cdk.App) -> cdk.Stack:
        stack = cdk.Stack(
            app, "UserCommands", env=cdk.Environment(account="123456789012", region="eu-west-1")
        )
        ledger = AccessLedger(stack, "Ledger")
        commands = CommandBroker(
            stack,
            "Commands",
            catalogue=_reference_settings().commands.command_catalogue(),
            ledger=ledger,
        )
        stack.commands = commands  # type: ignore[attr-defined]
        cdk.Validations.of(stack).add_plugins(*aws_solutions_plugins(stack), IotPolicyGuard())
        return stack

    stack, template, template_file = synth_checked(build, tmp_path)  # nag and guard clean
    assert cfn_lint_errors(template_file) == []
    writers = stack.commands.writers  # type: ignore[attr-defined]
    ledger_table = next(
        iter(
            template.find_resources(
                "AWS::DynamoDB::Table",
                {
                    "Properties": {
                        "KeySchema": [
                            {"AttributeName": "ledger", "KeyType": "HASH"},
                            {"AttributeName": "seq", "KeyType": "RANGE"},
                        ]
                    }
                },
            )
        )
    )
    for writer in writers:
        logical = stack.get_logical_id(writer.function.node.default_child)
        function = template.to_json()["Resources"][logical]
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["LEDGER_TABLE"] == {"Ref": ledger_table}, writer.node.path
        assert variables["LEDGER_ID"] == "access"
