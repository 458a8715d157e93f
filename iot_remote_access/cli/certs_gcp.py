"""``certs plan`` and ``inventory export`` with ``--cloud gcp``: the inventory in Firestore.

The same settings file as ``gcp plan|deploy|manifests`` (``--settings``): the project is
its ``gcp.projectId``, the collection ``gcp.rotationService.inventoryCollection``
(default ``iot-device-inventory``); the rotation settings are its ``certificates``
section, as for AWS (``cli/certs_settings.py``). The plan reads exactly what the daily
GCP planner reads (one query per day of its due window, ``rotation_planner.due_window``),
so it shows the slots the CronJob will write. Read-only; honours
``FIRESTORE_EMULATOR_HOST`` (the tests' emulator) and Google's default credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.core.rotation_plan import InventoryRecord

T = TypeVar("T")
DEFAULT_COLLECTION = "iot-device-inventory"


def _settings(settings_file: Path | None) -> Any:
    if settings_file is None:
        raise InputError("--settings: required with --cloud gcp; allowed: the GCP settings file")

    settings = read_fleet_settings(settings_file)
    if settings.gcp is None or settings.gcp.project_id is None:
        raise InputError(
            f"--settings: {settings_file} has no gcp.projectId; allowed: a settings file "
            "with the gcp section (docs/gcp.md)"
        )
    return settings


def _inventory(settings: Any) -> Any:
    from google.cloud import firestore

    from iot_remote_access.pubsub.rotation_inventory import FirestoreInventory

    rotation = settings.gcp.rotation_service
    collection = rotation.inventory_collection if rotation else DEFAULT_COLLECTION
    database = rotation.firestore_database if rotation else "(default)"
    client = firestore.Client(project=settings.gcp.project_id, database=database)
    return FirestoreInventory(client, collection)


def _firestore(read: Callable[[], T]) -> T:
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exceptions

    try:
        return read()
    except gexc.GoogleAPICallError as error:
        raise OperationError(
            f"Firestore refused the request: {type(error).__name__}: {str(error)[:200]}"
        ) from None
    except auth_exceptions.GoogleAuthError as error:
        raise OperationError(f"no Google Cloud credentials: {str(error)[:200]}") from None


def _budget_note(settings: Any) -> None:
    """The hourly budget against CA Service's quota, as the rotation service checks it."""
    from iot_remote_access.pubsub.rotation_settings import (
        CA_SERVICE_ENTERPRISE_CREATE_QPS,
        QUOTA_SHARE,
    )

    budget = settings.certificates.hourly_rotation_budget if settings.certificates else 500
    ceiling = int(CA_SERVICE_ENTERPRISE_CREATE_QPS * 3600 * QUOTA_SHARE)
    if budget > ceiling:
        click.echo(
            f"note: hourlyRotationBudget {budget} is above {ceiling}, half an hour of CA "
            f"Service's {CA_SERVICE_ENTERPRISE_CREATE_QPS} CreateCertificate/s per CA "
            "(Enterprise tier); the rotation service refuses it",
            err=True,
        )


def records(settings_file: Path | None, now: datetime, lead_days: int) -> list[InventoryRecord]:
    """The records the GCP daily planner plans from (its due window, one query per day)."""
    from iot_remote_access.pubsub.rotation_planner import due_window

    settings = _settings(settings_file)
    _budget_note(settings)
    inventory = _inventory(settings)
    return _firestore(lambda: list(inventory.expiring_on(due_window(now, lead_days))))


def export_rows(settings_file: Path | None, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every device document as an ``inventory export`` row (``fields``)."""
    inventory = _inventory(_settings(settings_file))

    def read() -> list[dict[str, Any]]:
        rows = []
        for item in inventory.scan_devices():
            row = {field: item.get(field, "") for field in fields}
            row["attempts"] = int(item.get("attempts", 0))
            rows.append(row)
        return rows

    return _firestore(read)
