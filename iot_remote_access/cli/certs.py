"""`certs simulate`, `certs plan` and `inventory export`: certificate lifecycle in CI and ops."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from iot_remote_access.cli.certs_settings import plan_settings
from iot_remote_access.cli.certs_simulate import simulate_command
from iot_remote_access.cli.errors import InputError, OperationError
from iot_remote_access.cli.inventory_enroll import enroll_command
from iot_remote_access.core.bounded_input import BoundedInputError, excerpt, parse_json, read_text
from iot_remote_access.core.rotation_plan import (
    InventoryRecord,
    RotationPlan,
    RotationState,
    plan_rotations,
)
from iot_remote_access.core.topics import THING_NAME_RULE

EXPORT_FIELDS = (
    "thing",
    "certificateId",
    "notAfter",
    "expiryDay",
    "status",
    "rotationState",
    "attempts",
    "lastAttemptAt",
    "lastRotationAt",
    "serial",
)


def _console() -> Console:
    return Console(soft_wrap=True, highlight=False)


@click.group("certs")
def certs() -> None:
    """Staggered certificate validity and rotation planning."""


certs.add_command(simulate_command)


# -- certs plan --------------------------------------------------------------------

aws_options = [
    click.option(
        "--table",
        "table_name",
        help="Inventory table (CertificateRotation's). Or --inventory FILE.",
    ),
    click.option("--region", help="AWS region. Default: the profile's."),
    click.option("--profile", help="AWS named profile. Default: the default credential chain."),
]


def _with_aws_options(function: Any) -> Any:
    for option in reversed(aws_options):
        function = option(function)
    return function


#: Clouds other than AWS: the module that reads their inventory, with
#: ``records(settings_file, now, lead_days)`` and ``export_rows(settings_file, fields)``.
OTHER_CLOUDS = {
    "azure": "iot_remote_access.cli.certs_azure",
    "gcp": "iot_remote_access.cli.certs_gcp",
}
cloud_option = click.option(
    "--cloud",
    type=click.Choice(["aws", *OTHER_CLOUDS]),
    default="aws",
    show_default=True,
    help="Where the inventory is (other clouds: from --settings FILE).",
)


def _cloud(cloud: str) -> Any:
    import importlib

    return importlib.import_module(OTHER_CLOUDS[cloud])


@certs.command("plan")
@cloud_option
@_with_aws_options
@click.option(
    "--inventory",
    "inventory_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An `inventory export` file (CSV or JSON) instead of the table.",
)
@click.option("--now", "now_text", help="Plan as of this time (ISO 8601 with zone). Default: now.")
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The deployment's settings file (JSON/YAML). Default: cdk.json's "
    "'iot-remote-access' context in the working folder, else the library's defaults.",
)
@click.option(
    "--lead-days",
    type=int,
    help="What-if: replaces the settings' leadTimeDays (default 90).",
)
@click.option(
    "--hourly-budget",
    type=int,
    help="What-if: replaces the settings' hourlyRotationBudget (default 500).",
)
@click.option("--hours", type=int, default=48, show_default=True, help="Hours of schedule to list.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def plan_command(
    cloud: str,
    table_name: str | None,
    region: str | None,
    profile: str | None,
    inventory_file: Path | None,
    now_text: str | None,
    settings_file: Path | None,
    lead_days: int | None,
    hourly_budget: int | None,
    hours: int,
    output_format: str,
) -> None:
    """The coming rotation schedule, computed from the inventory (read-only).

    Planned with the deployment's rotation settings (--settings FILE, or cdk.json's
    context); --lead-days and --hourly-budget replace single values (what-if)."""
    now = _parse_now(now_text)
    chosen = plan_settings(
        settings_file, {"--lead-days": lead_days, "--hourly-budget": hourly_budget}, Path.cwd()
    )
    settings = chosen.rotation
    for note in chosen.notes:
        click.echo(f"note: {note}", err=True)
    if not 1 <= hours <= MAX_HOURS:
        raise InputError(f"--hours: {excerpt(hours)}; allowed: 1..{MAX_HOURS}")
    if cloud != "aws" and table_name is not None:
        raise InputError(f"--table: the AWS inventory table; allowed with --cloud {cloud}: none")
    if cloud != "aws" and inventory_file is None:
        records = _cloud(cloud).records(settings_file, now, settings.lead_days)
    elif (table_name is None) == (inventory_file is None):
        raise InputError("--table or --inventory: give exactly one source of the inventory")
    elif inventory_file is not None:
        records = list(_records_from_file(inventory_file))
    else:
        assert table_name is not None
        records = list(_records_from_table(table_name, region, profile, now, settings.lead_days))
    plan = plan_rotations(records, now, settings)
    if output_format == "json":
        click.echo(json.dumps({**_plan_json(plan, hours), "settings": chosen.to_json()}, indent=2))
    else:
        _plan_table(plan, hours, chosen.source)


#: Ten years of hourly schedule is more than any plan needs.
MAX_HOURS = 24 * 366 * 10
# Dates the plan can add its lead, grace and backoff days to without leaving
# Python's calendar (year 9999): a --now or notAfter outside is a mistake.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_RANGE_TEXT = "out of range; allowed: a time from 1970 to 9000"


def _in_range(moment: datetime) -> bool:
    return _EARLIEST <= moment < _LATEST


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"--now: {text!r} is not an ISO 8601 time; allowed: e.g. 2026-03-01T09:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise InputError(
            f"--now: {text!r} has no time zone; allowed: e.g. 2026-03-01T09:00:00+00:00"
        )
    if not _in_range(moment):
        raise InputError(f"--now: {excerpt(text)} is {_RANGE_TEXT}")
    return moment


def _plan_json(plan: RotationPlan, hours: int) -> dict[str, Any]:
    until = plan.generated_at + timedelta(hours=hours)
    return {
        "generatedAt": plan.generated_at.isoformat(),
        "pending": plan.pending,
        "inFlight": plan.in_flight,
        "expiringWithin": {str(d): n for d, n in plan.expiring_within.items()},
        "critical": list(plan.critical),
        "exhausted": list(plan.exhausted),
        "late": list(plan.late),
        "perHour": {h.isoformat(): n for h, n in sorted(plan.per_hour().items()) if h < until},
        "slots": [
            {
                "thing": s.thing,
                "hour": s.hour.isoformat(),
                "notAfter": s.not_after.isoformat(),
                "attempt": s.attempt,
            }
            for s in plan.starting_before(until)
        ],
    }


def _plan_table(plan: RotationPlan, hours: int, source: str) -> None:
    console = _console()
    summary = Table(
        title=f"rotation plan as of {plan.generated_at.isoformat(timespec='minutes')}, "
        f"settings from {source}"
    )
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    for days, count in plan.expiring_within.items():
        summary.add_row(f"certificates expiring within {days} days", str(count))
    summary.add_row("rotations to start (whole due window)", str(plan.pending))
    summary.add_row("rotations under way", str(plan.in_flight))
    summary.add_row("inside 30 days, not rotated (alarm)", str(len(plan.critical)))
    summary.add_row("failed every attempt (alarm)", str(len(plan.exhausted)))
    summary.add_row("slots later than 30 days before expiry", str(len(plan.late)))
    console.print(summary)
    until = plan.generated_at + timedelta(hours=hours)
    schedule = Table(title=f"next {hours} hours")
    schedule.add_column("hour (UTC)")
    schedule.add_column("rotations", justify="right")
    schedule.add_column("first devices")
    by_hour: dict[datetime, list[str]] = {}
    for slot in plan.starting_before(until):
        by_hour.setdefault(slot.hour, []).append(slot.thing)
    for hour, things in sorted(by_hour.items()):
        more = f" (+{len(things) - 3})" if len(things) > 3 else ""
        schedule.add_row(
            hour.strftime("%Y-%m-%d %H:00"), str(len(things)), ", ".join(things[:3]) + more
        )
    console.print(schedule)


#: About two million devices as CSV (one million as JSON); larger fleets plan from
#: the table (--table), which reads only the certificates due in the lead window.
MAX_INVENTORY_BYTES = 256 * 1024 * 1024
#: An array of objects of scalars: two levels; a little room for odd exports.
MAX_INVENTORY_DEPTH = 4
THING_NAME_RE = re.compile(rf"\A{THING_NAME_RULE}\Z")


def _records_from_file(path: Path) -> Iterator[InventoryRecord]:
    try:
        text = read_text(path, max_bytes=MAX_INVENTORY_BYTES)
        rows: Iterable[dict[str, Any]]
        if path.suffix == ".json":
            parsed = parse_json(text, str(path), max_depth=MAX_INVENTORY_DEPTH)
            if not isinstance(parsed, list):
                raise InputError(f"--inventory: {path} must hold a JSON array of devices")
            rows = parsed
        else:
            rows = csv.DictReader(io.StringIO(text, newline=""))
        for number, row in enumerate(rows, start=1):
            yield _record(row, f"{path}: device {number}")
    except BoundedInputError as error:
        raise InputError(f"--inventory: {error}") from None
    except csv.Error as error:
        raise InputError(f"--inventory: {path} is not a CSV export ({error})") from None


def _record(row: Any, where: str) -> InventoryRecord:
    if not isinstance(row, dict):
        raise InputError(f"{where}: not an object")

    def when(key: str) -> datetime | None:
        value = row.get(key)
        if not value:
            return None
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise InputError(
                f"{where}: {key} {excerpt(value)} is not an ISO 8601 time; "
                "allowed: e.g. 2027-03-01T09:00:00+00:00"
            ) from None
        if moment.tzinfo is None:
            raise InputError(f"{where}: {key} {excerpt(value)} has no time zone")
        if not _in_range(moment):
            raise InputError(f"{where}: {key} {excerpt(value)} is {_RANGE_TEXT}")
        return moment

    missing = [k for k in ("thing", "certificateId", "notAfter") if not row.get(k)]
    if missing:
        raise InputError(
            f"{where}: missing {', '.join(missing)}; allowed: an `inventory export` file"
        )
    if not isinstance(row["thing"], str) or not THING_NAME_RE.fullmatch(row["thing"]):
        raise InputError(
            f"{where}: thing {excerpt(row['thing'])} is not a thing name; "
            f"allowed: {THING_NAME_RULE}"
        )
    if not isinstance(row["certificateId"], str):
        raise InputError(
            f"{where}: certificateId {excerpt(row['certificateId'])} is not a string; "
            "allowed: the certificate's id"
        )
    try:
        state = RotationState(row.get("rotationState") or RotationState.IDLE)
        attempts = int(row.get("attempts") or 0)
    except (ValueError, TypeError, OverflowError):
        raise InputError(
            f"{where}: rotationState {excerpt(row.get('rotationState'))} or attempts "
            f"{excerpt(row.get('attempts'))} "
            f"is not valid; allowed: {', '.join(s.value for s in RotationState)} and an integer"
        ) from None
    not_after = when("notAfter")
    assert not_after is not None
    return InventoryRecord(
        thing=str(row["thing"]),
        certificate_id=str(row["certificateId"]),
        not_after=not_after,
        status=str(row.get("status") or "ACTIVE"),
        rotation_state=state,
        attempts=attempts,
        last_attempt_at=when("lastAttemptAt"),
        last_rotation_at=when("lastRotationAt"),
    )


def _inventory(table_name: str, region: str | None, profile: str | None) -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError

    from iot_remote_access.lambdas.certs.inventory import Inventory

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as error:
        raise InputError(f"--profile: {error}") from None
    if session.region_name is None:
        raise InputError("--region: no region given and none configured for the profile")
    return Inventory(session.resource("dynamodb").Table(table_name))


def _aws_errors(function: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return function()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        raise OperationError(f"DynamoDB refused the request: {code}") from None
    except BotoCoreError as error:
        raise OperationError(f"cannot read the inventory: {error}") from None


def _records_from_table(
    table_name: str, region: str | None, profile: str | None, now: datetime, lead_days: int
) -> list[InventoryRecord]:
    inventory = _inventory(table_name, region, profile)
    today = now.astimezone(UTC).date()
    days = [today + timedelta(days=i) for i in range(lead_days + 1)]
    return list(_aws_errors(lambda: list(inventory.expiring_on(days))))


# -- inventory export ----------------------------------------------------------------


@click.group("inventory")
def inventory() -> None:
    """The device and certificate inventory (NIS2 Art. 21 asset inventory)."""


inventory.add_command(enroll_command)


@inventory.command("export")
@cloud_option
@_with_aws_options
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The settings file naming the hub (--cloud azure).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write. Default: stdout.",
)
def export_command(
    cloud: str,
    table_name: str | None,
    region: str | None,
    profile: str | None,
    settings_file: Path | None,
    output_format: str,
    output: Path | None,
) -> None:
    """Write every device with its certificate and rotation state (read-only scan)."""
    if cloud != "aws" and table_name is not None:
        raise InputError(f"--table: the AWS inventory table; allowed with --cloud {cloud}: none")
    if cloud != "aws":
        rows = _cloud(cloud).export_rows(settings_file, EXPORT_FIELDS)
    elif not table_name:
        raise InputError("--table: required; allowed: the inventory table's name")
    else:
        source = _inventory(table_name, region, profile)
        rows = _aws_errors(lambda: [_export_row(item) for item in source.scan_devices()])
    rows.sort(key=lambda row: row["thing"])
    if output_format == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"--output: cannot write {output} ({error.strerror})") from None
    click.echo(f"wrote {len(rows)} devices to {output}", err=True)


def _export_row(item: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {field: item.get(field, "") for field in EXPORT_FIELDS}
    row["attempts"] = int(item.get("attempts", 0))
    return row
