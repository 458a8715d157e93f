"""CommandBroker in a user-style stack: real synth with cdk-nag and the IoT policy guard, cfn-lint."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iot as iot
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from iot_remote_access.constructs.aws import CommandBroker
from iot_remote_access.constructs.aws.command_broker import SHARED_PACKAGES
from iot_remote_access.constructs.aws.library_function import stage_handler_code
from iot_remote_access.core.aws_policy import device_policy_document
from iot_remote_access.core.commands import CommandCatalogue, CommandSpec
from iot_remote_access.core.topics import DeviceAccess, TopicModel
from iot_remote_access.guard.cdk_plugin import IotPolicyGuard
from iot_remote_access.settings.commands import CommandsSettings
from tests.support.aws_synth import cfn_lint_errors, synth_checked

ACCOUNT, REGION = "123456789012", "eu-west-1"
HANDLER = "iot_remote_access.lambdas.command_broker.handler.handler"
# As settings files are read: JSON mode (lists for tuples), strict types.
CATALOGUE = CommandsSettings.model_validate_json(
    json.dumps(
        {
            "enabled": True,
            "catalogue": [
                {
                    "name": "diagnostics",
                    "purpose": "maintenance",
                    "senders": [f"arn:aws:iam::{ACCOUNT}:role/iot-operators"],
                    "arguments": {
                        "type": "object",
                        "properties": {
                            "level": {"type": "string", "enum": ["basic"], "maxLength": 5}
                        },
                        "additionalProperties": False,
                    },
                }
            ],
        }
    )
).command_catalogue()


class FleetCommandsStack(cdk.Stack):
    """What a user writes: the device policy with the responses grant, the broker, the checks."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)

        def arn(resource: str) -> str:
            kind, name = resource.split("/", 1)
            return self.format_arn(
                service="iot",
                resource=kind,
                resource_name=name,
                arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
            )

        # Stand-in for DevicePolicy.enable_commands() (not in DevicePolicy yet): the same
        # renderer DevicePolicy uses, with the responses switch on.
        iot.CfnPolicy(
            self,
            "DevicePolicy",
            policy_document=device_policy_document(DeviceAccess(command_responses=True), arn),
        )
        self.commands = CommandBroker(self, "Commands", catalogue=CATALOGUE)
        cdk.Validations.of(self).add_plugins(AwsSolutionsChecks(self), IotPolicyGuard())


def _statements(template: Template) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, resource in template.to_json()["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            document = resource["Properties"]["PolicyDocument"]
            found += [(logical_id, s) for s in document["Statement"]]
    return found


def _text(value: Any) -> str:
    """A synthesized ARN as text, references shown as <Name>."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    separator, parts = value["Fn::Join"]
    return str(separator).join(_text(part) for part in parts)


def _grants(statement: dict[str, Any], action: str) -> bool:
    actions = statement["Action"]
    actions = [actions] if isinstance(actions, str) else actions
    return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions)


@pytest.mark.parametrize("explicit_env", [True, False], ids=["explicit-env", "no-env"])
def test_synthesizes_clean_with_one_exact_publish_grant(tmp_path: Path, explicit_env: bool) -> None:
    env = cdk.Environment(account=ACCOUNT, region=REGION) if explicit_env else None
    _, template, template_file = synth_checked(
        lambda app: FleetCommandsStack(app, "FleetCommands", env=env), tmp_path
    )  # raises unless cdk-nag's AwsSolutions pack and the IoT policy guard pass
    assert cfn_lint_errors(template_file) == []
    publish = [(policy, s) for policy, s in _statements(template) if _grants(s, "iot:Publish")]
    allows = [s for _, s in publish if s["Effect"] == "Allow"]
    denies = [s for _, s in publish if s["Effect"] == "Deny"]
    # The broker and the fan-out dispatcher; each statement grants Publish only.
    assert len(allows) == 2 and len(denies) == 1
    assert all(allow["Action"] == "iot:Publish" for allow in allows)
    assert _text(allows[0]["Resource"]) == _text(allows[1]["Resource"])
    resource = _text(allows[0]["Resource"])
    assert resource == _text(denies[0]["Resource"])  # operators: denied exactly that
    where = f"{REGION}:{ACCOUNT}" if explicit_env else "<AWS::Region>:<AWS::AccountId>"
    assert resource == f"arn:<AWS::Partition>:iot:{where}:topic/cmd/*/commands"
    (url,) = template.find_resources("AWS::Lambda::Url").values()
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    (function,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": HANDLER}}
    ).values()
    variables = function["Properties"]["Environment"]["Variables"]
    assert CommandCatalogue.from_json(variables["COMMAND_CATALOGUE"]) == CATALOGUE
    assert (variables["COMMANDS_TOPIC"], variables["RESPONSES_TOPIC"]) == (
        "cmd/{thing}/commands",
        "cmd/{thing}/responses",
    )
    assert variables["EXECUTIONS_TABLE"] == {"Ref": _only(template, "AWS::DynamoDB::Table")}
    _check_executions_and_rule(template)
    (device_policy,) = template.find_resources("AWS::IoT::Policy").values()
    document = json.dumps(device_policy["Properties"]["PolicyDocument"])
    assert "cmd/${iot:Connection.Thing.ThingName}/responses" in document
    assert "cmd/*/" not in document and "cmd/+/" not in document


def _only(template: Template, kind: str) -> str:
    (logical_id,) = template.find_resources(kind)
    return str(logical_id)


def _check_executions_and_rule(template: Template) -> None:
    (table,) = template.find_resources("AWS::DynamoDB::Table").values()
    properties = table["Properties"]
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    table_id = _only(template, "AWS::DynamoDB::Table")
    dynamo = [
        statement
        for _, statement in _statements(template)
        if json.dumps(statement["Action"]).startswith(('"dynamodb:', '["dynamodb:'))
    ]
    actions = sorted(
        json.dumps(sorted(s["Action"]) if isinstance(s["Action"], list) else s["Action"])
        for s in dynamo
    )
    assert actions == sorted(
        [
            # broker: items, and listings on the indexes
            '["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]',
            '"dynamodb:Query"',
            '["dynamodb:GetItem", "dynamodb:UpdateItem"]',  # responses
            '"dynamodb:UpdateItem"',  # sweep: items, and its query on the indexes
            '"dynamodb:Query"',
            '["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]',  # dispatcher
        ]
    )
    table_arn = {"Fn::GetAtt": [table_id, "Arn"]}
    index_arn = {"Fn::Join": ["", [table_arn, "/index/*"]]}
    for statement in dynamo:  # the table itself or its own indexes (queries only)
        expected = index_arn if statement["Action"] == "dynamodb:Query" else table_arn
        assert statement["Resource"] == expected, statement
    (rule,) = template.find_resources("AWS::IoT::TopicRule").values()
    payload = rule["Properties"]["TopicRulePayload"]
    assert payload["Sql"] == (
        "SELECT encode(*, 'base64') AS payload, topic() AS topic, "
        "get_mqtt_property('correlation_data') AS correlation FROM 'cmd/+/responses'"
    )
    assert "CloudwatchLogs" in payload["ErrorAction"]


def test_the_grant_follows_a_custom_topic_model(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(), "Custom", env=cdk.Environment(account=ACCOUNT, region=REGION))
    topics = TopicModel(commands="fleet/eu/{thing}/down", responses="fleet/eu/{thing}/up-answers")
    CommandBroker(stack, "Commands", catalogue=CATALOGUE, topics=topics)
    template = Template.from_stack(stack)
    resources = [
        _text(s["Resource"]) for _, s in _statements(template) if _grants(s, "iot:Publish")
    ]
    # broker, dispatcher (allow) and the operator policy (deny)
    assert resources == [f"arn:<AWS::Partition>:iot:{REGION}:{ACCOUNT}:topic/fleet/eu/*/down"] * 3


def test_a_catalogue_too_big_for_the_lambda_environment_is_refused() -> None:
    stack = cdk.Stack(cdk.App(), "Big", env=cdk.Environment(account=ACCOUNT, region=REGION))
    catalogue = CommandCatalogue(
        tuple(
            CommandSpec(
                name=f"command-{i}", purpose="maintenance", senders=(), description="x" * 400
            )
            for i in range(12)
        )
    )
    with pytest.raises(ValueError, match=r"^catalogue: \d+ bytes as JSON; allowed: at most 3072"):
        CommandBroker(stack, "Commands", catalogue=catalogue)


@pytest.mark.parametrize("package", ["command_broker", "command_responses"])
def test_lambda_code_holds_the_handler_and_core(package: str) -> None:
    staged = stage_handler_code(package) / "iot_remote_access"
    assert (staged / "lambdas" / package / "handler.py").is_file()
    for module in (
        "commands.py",
        "command_executions.py",
        "argument_schema.py",
        "strict_json.py",
        "topics.py",
    ):
        assert (staged / "core" / module).is_file()
    assert not (staged / "device").exists() and not (staged / "settings").exists()


@pytest.mark.parametrize("package", sorted(SHARED_PACKAGES))
def test_each_staged_function_imports_from_its_own_asset(package: str) -> None:
    """The asset as deployed: the handler imports with only what is staged (and the layer's
    libraries), so a missing shared package fails here, not in Lambda."""
    staged = stage_handler_code(package, SHARED_PACKAGES[package])
    code = (
        f"import sys; sys.path.insert(0, {str(staged)!r}); "
        f"import iot_remote_access.lambdas.{package}.handler as h; print(h.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"AWS_REGION": "eu-west-1", "PATH": os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(staged))
