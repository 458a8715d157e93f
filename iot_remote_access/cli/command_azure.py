"""``iot-remote-access command ... --cloud azure``: commands as IoT Hub direct methods.

``backend(settings, options)`` builds an
:class:`~iot_remote_access.arm.command_service.AzureCommandService`:

- the catalogue from the settings file (``commands``), the hub from ``azure.iotHub.name``
  (``https://<name>.azure-devices.net``); ``IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT`` replaces
  that address (a stand-in in tests, a private endpoint's name),
- the caller: the Microsoft Entra object id (``oid`` claim) of the token the credential
  obtains for IoT Hub, as ``objectId:<guid>``; ``options["credential"]`` replaces
  ``DefaultAzureCredential`` (an azure-core ``TokenCredential``),
- ``options["connect_timeout"]``: seconds the hub waits for an offline device, 0..300
  (default 0),
- execution records in ``options["records"]`` (SQLite), default
  ``$XDG_STATE_HOME/iot-remote-access/azure-commands.sqlite``.

Problems are one line (:class:`~iot_remote_access.cli.errors.InputError`, exit 2).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from iot_remote_access.cli.errors import InputError
from iot_remote_access.core.command_backend import CommandBackend, CommandBackendError
from iot_remote_access.core.commands import CommandRuleError, validate_senders
from iot_remote_access.settings import FleetSettings

ENDPOINT_VARIABLE = "IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT"
RECORDS_FILE = "azure-commands.sqlite"


def backend(settings: FleetSettings | None, options: dict[str, Any]) -> CommandBackend:
    """The Azure command backend for this caller (raises InputError on unusable input)."""
    if settings is None or settings.azure is None:
        raise InputError("--cloud azure needs a settings file with an azure section (--settings)")
    if not settings.commands.enabled:
        raise InputError(
            "commands.enabled: false; allowed: true with a catalogue (docs/commands.md)"
        )
    from iot_remote_access.arm.command_service import AzureCommandService
    from iot_remote_access.arm.direct_methods import DirectMethodClient, hub_endpoint
    from iot_remote_access.core.command_store import ExecutionStore

    try:
        endpoint = os.environ.get(ENDPOINT_VARIABLE) or hub_endpoint(settings.azure.iot_hub.name)
    except ValueError as error:
        raise InputError(str(error)) from None
    credential = options.get("credential")
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return AzureCommandService(
        catalogue=settings.commands.command_catalogue(),
        client=DirectMethodClient(
            endpoint, credential, connection_verify=os.environ.get("REQUESTS_CA_BUNDLE") or True
        ),
        store=ExecutionStore(_records(options.get("records"))),
        requester=principal(credential),
        thing_name_pattern=settings.thing_name_pattern,
        connect_timeout=_connect_timeout(options.get("connect_timeout")),
    )


def _connect_timeout(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 300:
        raise InputError(
            f"connect-timeout: {str(value)[:20]!r}; allowed: whole seconds from 0 to 300 "
            "(IoT Hub's connectTimeoutInSeconds)"
        )
    return value


def _records(given: object) -> Path:
    if given is not None:
        return Path(str(given))
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "iot-remote-access" / RECORDS_FILE


def principal(credential: Any) -> str:
    """``objectId:<oid>`` from the access token the credential gets for IoT Hub.

    The token is read, not verified: it came from Entra ID to this process, and IoT Hub
    verifies it on every call (the hub's RBAC is the boundary; the catalogue narrows it).
    """
    from azure.core.exceptions import ClientAuthenticationError

    from iot_remote_access.arm.direct_methods import SCOPE

    try:
        token = credential.get_token(SCOPE).token
    except ClientAuthenticationError as error:
        raise CommandBackendError(f"Azure credentials: {str(error)[:200]}") from None
    try:
        claims_part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(claims_part + "=" * (-len(claims_part) % 4)))
        oid = claims["oid"]
    except (IndexError, KeyError, TypeError, ValueError):
        raise InputError(
            "principal: the Azure access token names no object id (oid); allowed: a user, "
            "service principal or managed identity of Microsoft Entra ID"
        ) from None
    value = f"objectId:{str(oid).lower()}"
    try:
        validate_senders([value])
    except CommandRuleError as error:
        raise InputError(f"principal: {error.problem}") from None
    return value
