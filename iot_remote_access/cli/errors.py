"""Exit codes and one-line errors shared by every CLI command."""

from __future__ import annotations

EXIT_OK = 0
#: Findings (lint/audit) or a failed operation (a cloud API refused, a broker error).
EXIT_FAILURE = 1
#: Bad input: arguments, settings or files that cannot be used. Nothing was changed.
EXIT_USAGE = 2


class CliError(Exception):
    """An error shown as one line, without a traceback, ending the command with ``code``."""

    code = EXIT_FAILURE


class InputError(CliError):
    """The user's input cannot be used (exit 2)."""

    code = EXIT_USAGE


class OperationError(CliError):
    """A remote operation failed (exit 1)."""

    code = EXIT_FAILURE
