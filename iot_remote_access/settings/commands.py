"""Settings of remote commands (``commands`` in ``cdk.json`` or the settings file).

The catalogue's rules are the broker's and the device's own (``core/commands.py``),
so a catalogue accepted here is one the deployed broker and the device accept.
Each problem is reported on its own line naming the field, e.g.
``iot-remote-access.commands.catalogue.0.arguments.properties.level.maxLength``.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import field_validator, model_validator

from iot_remote_access.core.argument_schema import SchemaError, check_schema
from iot_remote_access.core.commands import (
    DEFAULT_TIMEOUT_SECONDS,
    EMPTY_ARGUMENTS,
    EMPTY_RESULT,
    MAX_COMMANDS,
    CommandCatalogue,
    CommandSpec,
    validate_command_name,
    validate_purpose,
    validate_senders,
    validate_timeout,
)
from iot_remote_access.core.topics import THING_NAME_RULE
from iot_remote_access.settings.base import SettingsSection, compiled_pattern, core_problem


class CommandSettings(SettingsSection):
    """One command of the catalogue.

    Default: no arguments (an empty, closed object), an empty result, a 30-second
    timeout, any thing of the fleet, and nobody allowed to send it.
    """

    name: str
    #: Why the command exists (purpose limitation); the requester must state it.
    purpose: str
    #: Who may send it: IAM role or user ARNs (a role covers all its sessions), Google
    #: ``serviceAccount:``/``user:`` principals, Entra ``objectId:<guid>``.
    senders: tuple[str, ...] = ()
    arguments: dict[str, Any] = EMPTY_ARGUMENTS
    result: dict[str, Any] = EMPTY_RESULT
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    #: A regular expression the thing name must match for this command.
    things: str = THING_NAME_RULE
    description: str = ""

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> object:
        return core_problem(lambda: validate_command_name(value))

    @field_validator("purpose", mode="before")
    @classmethod
    def _purpose(cls, value: object) -> object:
        return core_problem(lambda: validate_purpose(value))

    @field_validator("senders", mode="before")
    @classmethod
    def _senders(cls, value: object) -> object:
        return core_problem(lambda: validate_senders(value))

    @field_validator("arguments", "result", mode="before")
    @classmethod
    def _schema(cls, value: object) -> object:
        try:
            return check_schema(value, field_name="")
        except SchemaError as error:
            # The schema error's path starts with "." (the setting itself is the root).
            where = error.field.lstrip(".")
            raise ValueError(f"{where + ': ' if where else ''}{error.problem}") from None

    @field_validator("timeout_seconds", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> object:
        return core_problem(lambda: validate_timeout(value))

    @field_validator("things", mode="before")
    @classmethod
    def _things(cls, value: object) -> object:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{value!r}; allowed: a regular expression such as 'temp-[0-9]+'")
        return compiled_pattern(value)

    def spec(self) -> CommandSpec:
        return CommandSpec(
            name=self.name,
            purpose=self.purpose,
            senders=self.senders,
            arguments=self.arguments,
            result=self.result,
            timeout_seconds=self.timeout_seconds,
            things=self.things,
            description=self.description,
        )


class CommandsSettings(SettingsSection):
    """The ``CommandBroker`` construct and the device module's catalogue.

    Default: off, with an empty catalogue (no command can be sent).
    """

    enabled: bool = False
    catalogue: tuple[CommandSettings, ...] = ()

    @model_validator(mode="after")
    def _whole_catalogue(self) -> Self:
        if len(self.catalogue) > MAX_COMMANDS:
            raise ValueError(
                f"catalogue: {len(self.catalogue)} commands; allowed: at most {MAX_COMMANDS}"
            )
        seen: dict[str, int] = {}
        for index, command in enumerate(self.catalogue):
            if command.name in seen:
                raise ValueError(
                    f"catalogue.{index}.name: {command.name!r} is also command "
                    f"{seen[command.name]}; allowed: unique names"
                )
            seen[command.name] = index
        if self.enabled and not self.catalogue:
            raise ValueError("catalogue: empty while enabled; allowed: at least one command")
        return self

    def command_catalogue(self) -> CommandCatalogue:
        """What the broker enforces and the device checks."""
        return CommandCatalogue(tuple(command.spec() for command in self.catalogue))
