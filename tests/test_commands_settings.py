"""The ``commands`` settings section: the catalogue, one line per problem naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from iot_remote_access.core.commands import CommandCatalogue, CommandSpec
from iot_remote_access.settings.commands import CommandsSettings
from iot_remote_access.settings.fleet import format_validation_error

SOURCE = "iot-remote-access.commands"
OPERATORS = "arn:aws:iam::123456789012:role/iot-operators"


def _parse(raw: dict[str, Any]) -> CommandsSettings:
    # As settings files and cdk.json are read: JSON mode (lists for tuples), strict types.
    return CommandsSettings.model_validate_json(json.dumps(raw))


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        _parse(raw)
    return format_validation_error(caught.value, SOURCE, CommandsSettings).splitlines()


def test_default_is_off_with_an_empty_catalogue() -> None:
    settings = _parse({})
    assert not settings.enabled
    assert settings.command_catalogue() == CommandCatalogue()


def test_camel_case_catalogue_reaches_the_core_model() -> None:
    settings = _parse(
        {
            "enabled": True,
            "catalogue": [
                {
                    "name": "diagnostics",
                    "purpose": "maintenance",
                    "senders": [OPERATORS],
                    "timeoutSeconds": 20,
                    "things": "temp-[0-9]+",
                    "arguments": {
                        "type": "object",
                        "properties": {"level": {"type": "string", "maxLength": 8}},
                        "additionalProperties": False,
                    },
                }
            ],
        }
    )
    (spec,) = settings.command_catalogue().commands
    assert spec == CommandSpec(
        name="diagnostics",
        purpose="maintenance",
        senders=(OPERATORS,),
        timeout_seconds=20,
        things="temp-[0-9]+",
        arguments={
            "type": "object",
            "properties": {"level": {"type": "string", "maxLength": 8}},
            "additionalProperties": False,
        },
    )


def test_every_problem_is_one_line_naming_its_field() -> None:
    problems = _problems(
        {
            "enabled": True,
            "catalogue": [
                {"name": "Reboot Now", "purpose": "maintenance"},
                {
                    "name": "diagnostics",
                    "purpose": "maintenance",
                    "senders": ["arn:aws:iam::123456789012:role/*"],
                    "timeoutSeconds": 7200,
                    "arguments": {
                        "type": "object",
                        "properties": {"level": {"type": "string"}},
                        "additionalProperties": False,
                    },
                    "colour": "red",
                },
            ],
        }
    )
    # Every problem, each on its own line (pydantic's order differs between JSON and Python mode).
    assert sorted(problems) == sorted(
        [
            f"{SOURCE}.catalogue.0.name: 'Reboot Now' is not a command name; allowed: "
            "[a-z][a-z0-9-]{0,62}",
            f"{SOURCE}.catalogue.1.senders: 'arn:aws:iam::123456789012:role/*' is not an IAM role or "
            "user ARN; allowed: arn:aws:iam::<account>:role/<name> or :user/<name>, no wildcards",
            f"{SOURCE}.catalogue.1.arguments: properties.level.maxLength: None; allowed: a whole "
            "number from 0 to 1024 (mandatory: every value is bounded)",
            f"{SOURCE}.catalogue.1.timeoutSeconds: 7200 is outside 1..3600; allowed: seconds",
            f"{SOURCE}.catalogue.1.colour: unknown setting; allowed: name, purpose, senders, "
            "arguments, result, timeoutSeconds, things, description",
        ]
    )


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (
            {"enabled": True},
            f"{SOURCE}: catalogue: empty while enabled; allowed: at least one command",
        ),
        (
            {"catalogue": [{"name": "a", "purpose": "m"}, {"name": "a", "purpose": "m"}]},
            f"{SOURCE}: catalogue.1.name: 'a' is also command 0; allowed: unique names",
        ),
        (
            {"catalogue": [{"name": "a"}]},
            f"{SOURCE}.catalogue.0.purpose: missing; required",
        ),
        (
            {"catalogue": [{"name": "a", "purpose": "m", "things": "("}]},
            f"{SOURCE}.catalogue.0.things: '(' is not a regular expression "
            "(missing ), unterminated subpattern at position 0)",
        ),
    ],
)
def test_catalogue_wide_problems(raw: dict[str, Any], line: str) -> None:
    assert _problems(raw) == [line]
