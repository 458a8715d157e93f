"""The one interface between the operator CLI (``iot-remote-access command``) and a cloud.

Each cloud implements it in a module of its own (AWS: the command broker's function
URL; GCP: Pub/Sub and the command service; Azure: IoT Hub direct methods). The CLI
knows only this interface, so ``command send|get|list`` behaves the same everywhere:
same request fields (:data:`iot_remote_access.core.commands.REQUEST_FIELDS`), same
execution record shape (:func:`iot_remote_access.core.command_executions.execution_item`,
with ``status`` as :func:`~iot_remote_access.core.command_executions.effective_status`
shows it), same errors.

Errors: a request the rules refuse raises
:class:`~iot_remote_access.core.commands.CommandRuleError` (its ``status`` is the HTTP
status a broker would answer: 400 bad input, 403 not allowed, 404 unknown, 409
conflict); a cloud that cannot be reached raises :class:`CommandBackendError`.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class CommandBackendError(Exception):
    """The cloud could not be reached or answered outside the protocol (one line, no secret)."""


class CommandBackend(Protocol):
    """Send commands, and read their execution records, on one cloud."""

    def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send one command (``body`` has the request fields); return its execution record."""

    def get(self, command_id: str) -> dict[str, Any]:
        """The execution record of ``command_id`` (CommandRuleError 404 if none)."""

    def list(self, *, thing: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Execution records, newest first, filtered by thing and status, at most ``limit``."""
