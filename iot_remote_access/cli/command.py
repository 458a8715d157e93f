"""`iot-remote-access command send|get|list`: remote commands, on any cloud.

The group is cloud-neutral: it checks the operator's input with the rules of
``core/commands.py`` (and, given ``--settings``, against the catalogue), then talks
to one :class:`~iot_remote_access.core.command_backend.CommandBackend`, imported
only when used from ``cli/command_<cloud>.py`` (``backend(settings, options)``).

The cloud: ``--cloud``, else ``$IOT_REMOTE_ACCESS_CLOUD``, else ``aws``. It is not
read from the settings file, because one settings file describes all three clouds.
``backend(settings, options)``: ``settings`` is the ``FleetSettings`` of ``--settings``
(or None), ``options`` the subcommand's options by name (``endpoint``, ``region``,
``profile``, ``cloud``, ``settings_file``, ...). Fan-out (``--things``,
``--thing-group``) needs a backend with ``fanout`` and ``fanout_status``.

Exit codes: 0 succeeded (``send`` without ``--wait``: accepted); 1 failed,
rejected, timed out, refused by the backend, or the backend unreachable; 2 bad
input (one line naming the option, the value shortened, what is allowed).
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.core import strict_json
from iot_remote_access.core.argument_schema import SchemaError, validate
from iot_remote_access.core.command_backend import CommandBackend, CommandBackendError
from iot_remote_access.core.command_executions import (
    MAX_LIST_LIMIT,
    PENDING,
    STATUSES,
    validate_limit,
)
from iot_remote_access.core.command_fanout import (
    DEFAULT_ABORT_PERCENT,
    DEFAULT_RATE_PER_SECOND,
    MAX_RATE_PER_SECOND,
    finished,
)
from iot_remote_access.core.commands import (
    CLIENT_TOKEN_RULE,
    MAX_DEPTH,
    MAX_REQUEST_BYTES,
    MAX_TIMEOUT_SECONDS,
    CommandRuleError,
    client_token,
    validate_command_id,
    validate_command_name,
    validate_purpose,
    validate_reason,
    validate_thing,
)

CLOUDS = ("aws", "gcp", "azure")
CLOUD_VARIABLE = "IOT_REMOTE_ACCESS_CLOUD"
ENDPOINT_VARIABLE = "IOT_REMOTE_ACCESS_COMMAND_URL"
#: Seconds between two reads while waiting (tests shorten it).
POLL_SECONDS = 1.0
#: A wait never lasts longer than the longest command timeout and a margin.
MAX_WAIT_SECONDS = MAX_TIMEOUT_SECONDS + 60
#: Request fields -> the options that set them, for one-line errors.
OPTION_OF = {
    "thing": "--thing",
    "things": "--things",
    "thingGroup": "--thing-group",
    "name": "--name",
    "arguments": "--args",
    "reason": "--reason",
    "purpose": "--purpose",
    "clientToken": "--client-token",
    "ratePerSecond": "--rate",
    "abortPercent": "--abort-percent",
    "id": "ID",
    "limit": "--limit",
    "status": "--status",
}
F = TypeVar("F", bound=Callable[..., Any])


def cloud_options(function: F) -> F:
    """Options every subcommand takes: which cloud, its settings and how to reach it."""
    for option in reversed(
        [
            click.option(
                "--cloud",
                type=click.Choice(CLOUDS),
                envvar=CLOUD_VARIABLE,
                default="aws",
                show_default=True,
                help=f"which cloud's backend. Default: ${CLOUD_VARIABLE}, else aws",
            ),
            click.option(
                "--settings",
                "settings_file",
                type=click.Path(path_type=Path, dir_okay=False),
                help="the fleet settings file: its catalogue checks the request first",
            ),
            click.option(
                "--endpoint",
                envvar=ENDPOINT_VARIABLE,
                help=f"AWS: the stack output CommandBrokerUrl. Default: ${ENDPOINT_VARIABLE}",
            ),
            click.option("--region", help="cloud region. Default: the profile's"),
            click.option(
                "--project", help="GCP: the project. Default: the settings' gcp.projectId"
            ),
            click.option(
                "--records",
                type=click.Path(path_type=Path, dir_okay=False),
                help="GCP and Azure: the local execution records. Default: under XDG_STATE_HOME",
            ),
            click.option("--profile", help="AWS named profile. Default: the credential chain"),
            click.option(
                "--output",
                type=click.Choice(["table", "json"]),
                default="table",
                show_default=True,
            ),
        ]
    ):
        function = option(function)
    return function


@click.group()
def command() -> None:
    """Send remote commands through the broker; read their execution records."""


@command.command("send")
@click.option("--thing", help="the device's thing name (or --things / --thing-group)")
@click.option("--things", help="fan-out: comma-separated thing names (at most 250)")
@click.option("--thing-group", help="fan-out: every thing of this thing group (AWS)")
@click.option("--name", required=True, help="the command, as named in the catalogue")
@click.option("--args", "arguments", default="{}", show_default=True, help="arguments, JSON object")
@click.option("--reason", required=True, help="ticket id or justification, 1..256 characters")
@click.option("--purpose", help="the command's purpose. Default: the catalogue's (--settings)")
@click.option("--client-token", help=f"makes a retry safe: {CLIENT_TOKEN_RULE}")
@click.option(
    "--rate", type=int, help=f"fan-out: things per second. Default: {DEFAULT_RATE_PER_SECOND}"
)
@click.option(
    "--abort-percent",
    type=int,
    help=f"fan-out: stop when more than this % fail. Default: {DEFAULT_ABORT_PERCENT}",
)
@click.option("--wait", is_flag=True, help="wait for the answer (fan-out: show progress)")
@cloud_options
@click.pass_context
def send(ctx: click.Context, /, **options: Any) -> None:
    """Send one command to a thing (exit 0 accepted; with --wait, 0 only if it succeeded)."""
    body = _request_body(options)
    backend = _backend(options)
    if "thing" not in body:
        ctx.exit(_fanout(backend, body, options))
    record = _call(lambda: backend.send(body))
    if options["wait"] and record.get("status") in ("sent", PENDING):
        record = _wait(backend, str(record.get("id")))
    _show([record], options["output"], single=True)
    ctx.exit(0 if not options["wait"] or record.get("status") == "succeeded" else 1)


@command.command("get")
@click.argument("command_id", metavar="ID")
@cloud_options
@click.pass_context
def get(ctx: click.Context, /, command_id: str, **options: Any) -> None:
    """Show one execution record (exit 0 succeeded or pending, 1 otherwise)."""
    _checked(lambda: validate_command_id(command_id))
    backend = _backend(options)
    record = _call(lambda: backend.get(command_id))
    _show([record], options["output"], single=True)
    ctx.exit(0 if record.get("status") in ("succeeded", PENDING) else 1)


@command.command("list")
@click.option("--thing", help="only this thing's commands")
@click.option("--status", type=click.Choice(STATUSES), help="only commands in this status")
@click.option("--limit", default="20", show_default=True, help=f"1..{MAX_LIST_LIMIT}")
@cloud_options
def list_(thing: str | None, status: str | None, limit: str, **options: Any) -> None:
    """List execution records you may read, newest first."""
    if thing is not None:
        _checked(lambda: validate_thing(thing))
    count = _checked(lambda: validate_limit(limit))
    backend = _backend(options)
    records = _call(lambda: backend.list(thing=thing, status=status, limit=count))
    _show(records, options["output"], single=False)


# -- input ------------------------------------------------------------------------------


def _option(field: str) -> str:
    """The option a request field comes from, e.g. ``--args (arguments.level)``."""
    head = field.split(".", 1)[0]
    option = OPTION_OF.get(head)
    if option is None:
        return field
    return option if head == field else f"{option} ({field})"


def _checked(check: Callable[[], Any]) -> Any:
    """Run a rule; its CommandRuleError becomes one line naming the option (exit 2)."""
    try:
        return check()
    except CommandRuleError as error:
        raise InputError(f"{_option(error.field)}: {error.problem}") from None


def _request_body(options: Mapping[str, Any]) -> dict[str, Any]:
    """The request, checked locally: nothing is sent that the broker would refuse as input."""
    targets = [key for key in ("thing", "things", "thing_group") if options[key] is not None]
    if len(targets) != 1:
        raise InputError("--thing: allowed: exactly one of --thing, --things, --thing-group")
    name = _checked(lambda: validate_command_name(options["name"]))
    body: dict[str, Any] = {
        "name": name,
        "arguments": _arguments(options["arguments"]),
        "reason": _checked(lambda: validate_reason(options["reason"])),
    }
    if options["thing"] is not None:
        body["thing"] = _checked(lambda: validate_thing(options["thing"]))
    elif options["things"] is not None:
        names = [part.strip() for part in options["things"].split(",") if part.strip()]
        body["things"] = [_checked(lambda n=n: validate_thing(n)) for n in names]  # type: ignore[misc]
    else:
        body["thingGroup"] = options["thing_group"]
    if "thing" in body and (options["rate"] is not None or options["abort_percent"] is not None):
        raise InputError("--rate: only for a fan-out (--things or --thing-group)")
    if options["rate"] is not None:
        body["ratePerSecond"] = _bounded("--rate", options["rate"], 1, MAX_RATE_PER_SECOND)
    if options["abort_percent"] is not None:
        body["abortPercent"] = _bounded("--abort-percent", options["abort_percent"], 0, 100)
    if options["client_token"] is not None:
        body["clientToken"] = options["client_token"]
        _checked(lambda: client_token(body))
    declared = _catalogue_check(options, name, body["arguments"])
    purpose = options["purpose"] or declared
    if purpose is None:
        raise InputError("--purpose: missing; give the command's purpose, or --settings")
    body["purpose"] = _checked(lambda: validate_purpose(purpose))
    return body


def _bounded(option: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InputError(f"{option}: {value}; allowed: a whole number from {low} to {high}")
    return value


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = strict_json.loads(text, max_bytes=MAX_REQUEST_BYTES, max_depth=MAX_DEPTH)
    except strict_json.StrictJsonError as error:
        raise InputError(f"--args: {error.problem}; allowed: a JSON object") from None
    if not isinstance(value, dict):
        raise InputError(f"--args: {text[:60]!r} is not a JSON object; allowed: {{...}}")
    return value


def _catalogue_check(options: Mapping[str, Any], name: str, arguments: Any) -> str | None:
    """With --settings: the command exists, its arguments are valid; its purpose."""
    settings = _settings(options)
    if settings is None:
        return None
    catalogue = settings.commands.command_catalogue()
    spec = _checked(lambda: catalogue.get(name))
    try:
        validate(arguments, spec.arguments)
    except SchemaError as error:
        raise InputError(f"--args: {error.field}: {error.problem}") from None
    return str(spec.purpose)


def _settings(options: Mapping[str, Any]) -> Any:
    path = options.get("settings_file")
    if path is None:
        return None

    return read_fleet_settings(path)


# -- the backend ------------------------------------------------------------------------


def _backend(options: Mapping[str, Any]) -> CommandBackend:
    cloud = options["cloud"]
    try:
        module = importlib.import_module(f"iot_remote_access.cli.command_{cloud}")
    except ModuleNotFoundError:
        raise InputError(
            f"--cloud: {cloud!r} has no command backend in this installation"
        ) from None
    settings = _settings(options)
    backend: CommandBackend = module.backend(settings, dict(options))
    return backend


def _call(call: Callable[[], Any]) -> Any:
    """A backend call: its refusals are exit 2 (bad input) or 1 (refused), one line."""
    try:
        return call()
    except CommandRuleError as error:
        field = _option(error.field)
        if error.status in (400, 413):
            raise InputError(f"{field}: {error.problem}") from None
        raise OperationError(f"refused ({error.status}): {field}: {error.problem}") from None
    except CommandBackendError as error:
        raise OperationError(str(error)) from None


def _wait(backend: CommandBackend, command_id: str) -> dict[str, Any]:
    """Read the record until it leaves pending (the expiry bounds it: then timed-out)."""
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    click.echo(f"waiting for {command_id} ...", err=True)
    while True:
        record: dict[str, Any] = _call(lambda: backend.get(command_id))
        if record.get("status") != PENDING or time.monotonic() > deadline:
            return record
        time.sleep(POLL_SECONDS)


def _fanout(backend: Any, body: dict[str, Any], options: Mapping[str, Any]) -> int:
    """Start a fan-out; with --wait, show progress until it finishes (exit 1 on failures)."""
    if not hasattr(backend, "fanout"):
        raise InputError(f"--things: fan-out is not available on {options['cloud']}")
    state = _call(lambda: backend.fanout(body))
    fanout_id = str(state.get("id"))
    if options["wait"]:
        deadline = time.monotonic() + MAX_WAIT_SECONDS * 24
        while not finished(state) and time.monotonic() < deadline:
            click.echo(_progress_line(state), err=True)
            time.sleep(POLL_SECONDS)
            state = _call(lambda: backend.fanout_status(fanout_id))
        click.echo(_progress_line(state), err=True)
    _show([state], options["output"], single=True)
    if not options["wait"]:
        return 0
    failed = int(state.get("failed", 0)) + int(state.get("refused", 0))
    return 0 if state.get("status") != "aborted" and failed == 0 and finished(state) else 1


def _progress_line(state: Mapping[str, Any]) -> str:
    total = state.get("total", "?")
    return (
        f"fan-out {state.get('id')}: {state.get('status')}; dispatched {state.get('dispatched', 0)}"
        f"/{total}, succeeded {state.get('succeeded', 0)}, failed {state.get('failed', 0)}, "
        f"refused {state.get('refused', 0)}"
    )


# -- output -----------------------------------------------------------------------------

COLUMNS = ("id", "thing", "command", "status", "issuedAt", "completedAt", "requester", "error")


def _show(records: list[dict[str, Any]], output: str, *, single: bool) -> None:
    from iot_remote_access.cli.tunnel import shown

    if output == "json":
        click.echo(json.dumps(records[0] if single else records, indent=2, sort_keys=True))
        return
    if single:
        table = Table("field", "value")
        for key, value in records[0].items():
            table.add_row(Text(shown(key, 40)), Text(shown(value, 1000)))
    else:
        table = Table()
        for column in COLUMNS:
            # Ids are what the operator copies into `command get`: never cut.
            table.add_column(
                column, no_wrap=column == "id", min_width=36 if column == "id" else None
            )
        for record in records:
            table.add_row(*(Text(shown(record.get(key) or "", 1000)) for key in COLUMNS))
    Console(soft_wrap=True).print(table if records else "no commands")
