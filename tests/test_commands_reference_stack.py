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
