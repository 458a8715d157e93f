"""The ``iot-remote-access`` command.

Each capability adds its commands in a module of its own and registers them
here. Errors are one line on stderr with a fixed exit code (see ``errors``),
never a traceback: the CLI runs in CI pipelines that read exit codes.
"""

from __future__ import annotations

import importlib
import sys

import click

from iot_remote_access import __version__
from iot_remote_access.cli.errors import EXIT_USAGE, CliError, error_line

#: name -> (module under ``iot_remote_access.cli``, attribute, the command's help).
#: Commands are imported only when run: importing all of them (the Azure group's
#: pydantic settings alone took 162 ms) made ``lint`` of one file take 0.3-0.4 s.
#: The help text is repeated here so that ``--help`` lists them without importing;
#: ``tests/test_guard_lint_scale.py`` checks it against the commands' own.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "audit": (
        "guard",
        "audit",
        "Check the default version of every IoT policy in a live account (read-only). "
        "Exit 0 clean, 1 findings, 2 account unreadable.",
    ),
    "azure": (
        "azure",
        "azure",
        "Plan and deploy the Azure equivalent: IoT hub (X.509 only), CA with proof of "
        "possession, DPS, Device Streams, diagnostics and the stream alert. Credentials: "
        "DefaultAzureCredential (e.g. after `az login`).",
    ),
    "bridge": ("bridge", "bridge", "The MQTT <-> Cloud Pub/Sub bridge service."),
    "certs": ("certs", "certs", "Staggered certificate validity and rotation planning."),
    "command": (
        "command",
        "command",
        "Send remote commands through the broker; read their execution records.",
    ),
    "evidence": (
        "evidence",
        "evidence",
        "Compliance evidence: export and verify the tamper-evident access ledger.",
    ),
    "gcp": ("gcp", "gcp", "Google Cloud: the Pub/Sub topology (and the bridge's side of it)."),
    "inventory": (
        "certs",
        "inventory",
        "The device and certificate inventory (NIS2 Art. 21 asset inventory).",
    ),
    "lint": (
        "guard",
        "lint",
        "Check IoT policies in cdk.out folders, CloudFormation templates (JSON/YAML) and "
        "policy JSON files. Exit 0 clean, 1 findings, 2 unreadable input.",
    ),
    "reach": (
        "reach",
        "reach",
        "Prove no device reaches another's topics: IoT policies, templates, cdk.out, "
        "mosquitto ACLs. Exit 0 none, 1 reach found (with witnesses), 2 unreadable input.",
    ),
    "tunnel": (
        "tunnel",
        "tunnel",
        "Open (through the broker), list and close Secure Tunneling tunnels.",
    ),
}


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and return the command."""
    module_name, attribute, _ = COMMANDS[name]
    module = importlib.import_module(f"iot_remote_access.cli.{module_name}")
    command: click.Command = getattr(module, attribute)
    if name == "gcp" and "manifests" not in getattr(command, "commands", {}):
        from iot_remote_access.cli.gcp_device_realm import device_realm
        from iot_remote_access.cli.gcp_manifests import manifests

        command.add_command(manifests)  # type: ignore[attr-defined]
        command.add_command(device_realm)  # type: ignore[attr-defined]
    if name == "azure" and "rotate" not in getattr(command, "commands", {}):
        from iot_remote_access.cli.azure_rotate import rotate

        command.add_command(rotate)  # type: ignore[attr-defined]
    return command


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's, but from COMMANDS: listing must not import every command.
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.utils.make_default_short_help(COMMANDS[name][2], limit))
            for name in sorted(COMMANDS)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Secure remote access to IoT fleets: policy guard, tunnels, certificates.",
)
@click.version_option(__version__, prog_name="iot-remote-access")
def cli() -> None:
    pass


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning errors into one line + exit code."""
    try:
        code = cli.main(args=argv, prog_name="iot-remote-access", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        print(error.format_message(), file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except click.UsageError as error:
        _fail(error.format_message(), EXIT_USAGE)
    except click.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except CliError as error:
        _fail(str(error), error.code)
    except click.Abort:
        _fail("aborted", 130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    print(f"error: {error_line(message)}", file=sys.stderr)
    sys.exit(code)
