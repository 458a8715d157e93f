"""A tiny click wrapper around one cloud's ``backend(settings, options)``, for tests only.

The operator CLI group (``iot_remote_access/cli/command.py``) is built on another branch;
until it is merged this wrapper joins a backend to a click command the way that group
does: settings from ``--settings``, one JSON document on stdout, exit codes 0 (succeeded
or sent), 1 (failed, timed-out, refused) and 2 (bad input), one line on stderr.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from iot_remote_access.cli.errors import CliError
from iot_remote_access.core.command_backend import CommandBackend, CommandBackendError
from iot_remote_access.core.commands import CommandRuleError
from iot_remote_access.settings import FleetSettings

Factory = Callable[[FleetSettings | None, dict[str, Any]], CommandBackend]


def command_group(factory: Factory, options: dict[str, Any]) -> click.Group:
    """``command send|get|list`` over ``factory`` (a cloud module's ``backend``)."""

    @click.group()
    @click.option("--settings", "settings_file", type=click.Path(path_type=Path), required=True)
    @click.pass_context
    def command(ctx: click.Context, settings_file: Path) -> None:
        ctx.obj = FleetSettings.from_file(settings_file)

    def run(ctx: click.Context, call: Callable[[CommandBackend], Any]) -> None:
        try:
            result = call(factory(ctx.obj, dict(options)))
        except CommandRuleError as error:
            click.echo(f"error: {error.field}: {error.problem}", err=True)
            ctx.exit(2 if error.status in (400, 413) else 1)
        except CommandBackendError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)
        except CliError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(getattr(error, "code", 1))
        click.echo(json.dumps(result, sort_keys=True))
        statuses = [r.get("status") for r in (result if isinstance(result, list) else [result])]
        ctx.exit(1 if {"failed", "timed-out", "rejected"} & set(statuses) else 0)

    @command.command()
    @click.option("--thing", required=True)
    @click.option("--name", required=True)
    @click.option("--args", "arguments", default="{}")
    @click.option("--reason", required=True)
    @click.option("--purpose", required=True)
    @click.option("--wait", is_flag=True)
    @click.pass_context
    def send(
        ctx: click.Context,
        thing: str,
        name: str,
        arguments: str,
        reason: str,
        purpose: str,
        wait: bool,
    ) -> None:
        try:
            parsed = json.loads(arguments)
        except ValueError:
            click.echo("error: args: not JSON", err=True)
            ctx.exit(2)
        body = {
            "thing": thing,
            "name": name,
            "arguments": parsed,
            "reason": reason,
            "purpose": purpose,
        }

        def call(backend: CommandBackend) -> dict[str, Any]:
            record = backend.send(body)
            while wait and record["status"] == "pending":
                time.sleep(0.2)
                record = backend.get(record["id"])
            return record

        run(ctx, call)

    @command.command()
    @click.argument("command_id")
    @click.pass_context
    def get(ctx: click.Context, command_id: str) -> None:
        run(ctx, lambda backend: backend.get(command_id))

    @command.command(name="list")
    @click.option("--thing")
    @click.option("--status")
    @click.pass_context
    def list_(ctx: click.Context, thing: str | None, status: str | None) -> None:
        run(ctx, lambda backend: backend.list(thing=thing, status=status, limit=100))

    return command
