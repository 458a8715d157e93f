"""``certs plan`` and ``inventory export`` with ``--cloud azure``: the inventory in twin tags.

The hub comes from the settings file (``azure.iotHub.name``, so
``https://<name>.azure-devices.net``); ``IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT`` replaces that
address (a private endpoint's name; a stand-in in tests) and ``REQUESTS_CA_BUNDLE`` the TLS
trust, as for ``command --cloud azure``. The credential is azure-identity's
``DefaultAzureCredential``; reading twins needs the hub's "IoT Hub Data Reader" role.
The rotation settings (lead time, hourly budget) are the same ``certificates`` section the
AWS stack reads (``cli/certs_settings.py``). Both commands only read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.core.rotation_plan import InventoryRecord

ENDPOINT_VARIABLE = "IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT"
T = TypeVar("T")


def _inventory(settings_file: Path | None) -> Any:
    if settings_file is None:
        raise InputError(
            "--settings: required with --cloud azure; allowed: the Azure settings file"
        )
    from iot_remote_access.arm.direct_methods import hub_endpoint
    from iot_remote_access.arm.hub_service import TwinClient
    from iot_remote_access.arm.twin_inventory import TwinInventory

    settings = read_fleet_settings(settings_file)
    if settings.azure is None:
        raise InputError(
            f"--settings: {settings_file} has no azure section; allowed: a settings file "
            "with azure.iotHub (docs/azure.md)"
        )
    try:
        endpoint = os.environ.get(ENDPOINT_VARIABLE) or hub_endpoint(settings.azure.iot_hub.name)
    except ValueError as error:
        raise InputError(str(error)) from None
    from azure.identity import DefaultAzureCredential

    from iot_remote_access.arm.clients import SignInCredential

    client = TwinClient(
        endpoint,
        SignInCredential(DefaultAzureCredential()),
        connection_verify=os.environ.get("REQUESTS_CA_BUNDLE") or True,
    )
    return TwinInventory(client)


def _hub_errors(read: Callable[[], T]) -> T:
    from iot_remote_access.arm.errors import AzureSignInRequired
    from iot_remote_access.arm.hub_service import HubServiceError
    from iot_remote_access.arm.twin_inventory import InventoryError

    try:
        return read()
    except AzureSignInRequired as error:
        raise OperationError(str(error)) from None
    except HubServiceError as error:
        raise OperationError(f"cannot read the inventory: {error}") from None
    except InventoryError as error:
        raise InputError(f"inventory: {error}") from None


def records(settings_file: Path | None, now: datetime, lead_days: int) -> list[InventoryRecord]:
    """The twins whose certificate expires within the lead time (one query, paged)."""
    inventory = _inventory(settings_file)
    return _hub_errors(lambda: list(inventory.due(now + timedelta(days=lead_days))))


def export_rows(settings_file: Path | None, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every device with certificate tags, as ``inventory export`` rows (``fields``)."""
    from iot_remote_access.arm.twin_inventory import certificate_tags, record_of

    inventory = _inventory(settings_file)

    def read() -> list[dict[str, Any]]:
        rows = []
        for twin in inventory.all():
            record, tags = record_of(twin), certificate_tags(twin)
            row = {
                "thing": record.thing,
                "certificateId": record.certificate_id,
                "notAfter": record.not_after.isoformat(),
                "expiryDay": record.not_after.date().isoformat(),
                "status": record.status,
                "rotationState": record.rotation_state.value,
                "attempts": record.attempts,
                "lastAttemptAt": _iso(record.last_attempt_at),
                "lastRotationAt": _iso(record.last_rotation_at),
                "serial": str(tags.get("serial") or ""),
            }
            rows.append({field: row.get(field, "") for field in fields})
        return rows

    return _hub_errors(read)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""
