"""Exit codes and one-line errors shared by every CLI command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from iot_remote_access.core.bounded_input import one_line

if TYPE_CHECKING:
    from iot_remote_access.settings.fleet import FleetSettings

EXIT_OK = 0
#: Findings (lint/audit) or a failed operation (a cloud API refused, a broker error).
EXIT_FAILURE = 1
#: Bad input: arguments, settings or files that cannot be used. Nothing was changed.
EXIT_USAGE = 2


class CliError(Exception):
    """An error shown as one line, without a traceback, ending the command with ``code``.

    The message is made one terminal-safe line of bounded length here, whatever
    it quotes (settings values, file names, a cloud API's text).
    """

    code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(error_line(message))


def error_line(message: str) -> str:
    """``message`` as the CLI prints it: one line, control and bidi characters escaped, short."""
    return one_line(message, MAX_ERROR_CHARS)


#: Longest error line the CLI prints (a few settings problems fit; a 2 MB value does not).
MAX_ERROR_CHARS = 1000


class InputError(CliError):
    """The user's input cannot be used (exit 2)."""

    code = EXIT_USAGE


class OperationError(CliError):
    """A remote operation failed (exit 1)."""

    code = EXIT_FAILURE


def settings_input_error(error: Exception) -> InputError:
    """A SettingsError (one line per problem) as the CLI's one line, problems joined by ``;``."""
    return InputError("invalid settings: " + "; ".join(str(error).splitlines()))


def read_fleet_settings(path: Path) -> FleetSettings:
    """``--settings FILE`` as every command reads it (``FleetSettings.from_file``): bounded,
    the settings may sit under ``iot-remote-access``; a problem is exit 2, one line."""
    from iot_remote_access.settings import SettingsError
    from iot_remote_access.settings.fleet import FleetSettings

    try:
        return FleetSettings.from_file(path)
    except SettingsError as error:
        raise settings_input_error(error) from None
