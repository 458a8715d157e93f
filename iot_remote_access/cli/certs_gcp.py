"""``certs plan --cloud gcp`` and ``inventory export --cloud gcp``: the Firestore inventory.

The same settings file as ``gcp plan|deploy`` (``--settings``): the project is its
``gcp.projectId`` unless ``--project`` is given; the rotation settings are its
``certificates`` section, as for AWS. The plan reads exactly what the daily GCP
planner reads (one query per day of the due window, ``rotation_planner.due_window``),
so it shows the slots the CronJob will write. Read-only; honours
``FIRESTORE_EMULATOR_HOST`` (the tests' emulator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from iot_remote_access.cli.errors import InputError, OperationError
from iot_remote_access.core.bounded_input import excerpt
from iot_remote_access.core.gcp_rules import GcpRuleError, validate_project_id
from iot_remote_access.core.rotation_plan import InventoryRecord, RotationSettings

T = TypeVar("T")
DEFAULT_COLLECTION = "iot-device-inventory"

gcp_options = [
    click.option(
        "--project",
        "gcp_project",
        help="--cloud gcp: the Google Cloud project. Default: --settings' gcp.projectId.",
    ),
    click.option(
        "--collection",
        "gcp_collection",
        default=DEFAULT_COLLECTION,
        show_default=True,
        help="--cloud gcp: the Firestore collection of the inventory.",
    ),
]


def with_gcp_options(function: Any) -> Any:
    for option in reversed(gcp_options):
        function = option(function)
    return function


def _project(settings_file: Path | None, given: str | None) -> str:
    if given is None and settings_file is not None:
        from iot_remote_access.settings import SettingsError
        from iot_remote_access.settings.fleet import FleetSettings

        try:
            fleet = FleetSettings.from_file(settings_file)
        except (SettingsError, ValueError) as error:
            raise InputError(f"--settings: {error}") from None
        given = fleet.gcp.project_id if fleet.gcp is not None else None
    if given is None:
        raise InputError(
            "--project: not given and --settings has no gcp.projectId; "
            "allowed: a Google Cloud project id"
        )
    try:
        return validate_project_id(given, field_name="--project")
    except GcpRuleError as error:
        raise InputError(str(error)) from None


def _inventory(settings_file: Path | None, options: Mapping[str, Any]) -> Any:
    from google.cloud import firestore

    from iot_remote_access.pubsub.rotation_inventory import FirestoreInventory

    collection = str(options.get("gcp_collection") or DEFAULT_COLLECTION)
    if not collection.replace("-", "").replace("_", "").isalnum() or len(collection) > 100:
        raise InputError(
            f"--collection: {excerpt(collection)}; allowed: letters, digits, '-' and '_', "
            "at most 100"
        )
    project = _project(settings_file, options.get("gcp_project"))
    return FirestoreInventory(firestore.Client(project=project), collection)


def _firestore(function: Callable[[], T]) -> T:
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exceptions

    try:
        return function()
    except gexc.GoogleAPICallError as error:
        raise OperationError(
            f"Firestore refused the request: {type(error).__name__}: {str(error)[:200]}"
        ) from None
    except auth_exceptions.GoogleAuthError as error:
        raise OperationError(f"no Google credentials: {str(error)[:200]}") from None


def due_records(
    settings_file: Path | None, options: Mapping[str, Any], now: datetime, plan: RotationSettings
) -> list[InventoryRecord]:
    """The records the GCP daily planner plans from (its due window, one query per day)."""
    from iot_remote_access.pubsub.rotation_planner import due_window
    from iot_remote_access.pubsub.rotation_settings import (
        CA_SERVICE_ENTERPRISE_CREATE_QPS,
        QUOTA_SHARE,
    )

    ceiling = int(CA_SERVICE_ENTERPRISE_CREATE_QPS * 3600 * QUOTA_SHARE)
    if plan.hourly_budget > ceiling:
        click.echo(
            f"note: hourlyRotationBudget {plan.hourly_budget} is above {ceiling}, half an hour "
            f"of CA Service's {CA_SERVICE_ENTERPRISE_CREATE_QPS} CreateCertificate/s per CA "
            "(Enterprise tier); the rotation service refuses it unless ROTATION_CA_CREATE_QPS "
            "is raised",
            err=True,
        )
    inventory = _inventory(settings_file, options)
    return _firestore(lambda: list(inventory.expiring_on(due_window(now, plan.lead_days))))


def devices(settings_file: Path | None, options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every device document, for ``inventory export``."""
    inventory = _inventory(settings_file, options)
    return _firestore(lambda: list(inventory.scan_devices()))
