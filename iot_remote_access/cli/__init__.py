"""The ``iot-remote-access`` command.

Each capability adds its commands in a module of its own and registers them
here. Errors are one line on stderr with a fixed exit code (see ``errors``),
never a traceback: the CLI runs in CI pipelines that read exit codes.
"""

from __future__ import annotations

import sys

import click

from iot_remote_access import __version__
from iot_remote_access.cli import azure, bridge, certs, gcp, gcp_manifests, guard, tunnel
from iot_remote_access.cli.errors import EXIT_USAGE, CliError, error_line


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Secure remote access to IoT fleets: policy guard, tunnels, certificates.",
)
@click.version_option(__version__, prog_name="iot-remote-access")
def cli() -> None:
    pass


cli.add_command(guard.lint)
cli.add_command(guard.audit)
gcp.gcp.add_command(gcp_manifests.manifests)
cli.add_command(gcp.gcp)
cli.add_command(bridge.bridge)
cli.add_command(azure.azure)
cli.add_command(certs.certs)
cli.add_command(certs.inventory)
cli.add_command(tunnel.tunnel)


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
