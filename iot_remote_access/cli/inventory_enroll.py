"""``inventory enroll --cloud gcp``: put devices' current certificates into the inventory.

Input: PEM files, each holding one or more device certificates (a bundle), or ``-`` for
a bundle on stdin. Why files and not a directory: a shell glob (``certs/*.pem``) already
selects a directory's certificates, and naming what is read keeps keys, CA certificates
and stray files out of it by construction; ``-`` lets a provisioning pipeline pipe what
it exports (``... | iot-remote-access inventory enroll --cloud gcp --settings f.yaml -``).

Nothing half-done: every certificate is read and checked first
(``pubsub/enrollment.py``), then every document is read and checked against what is
there (``rotation_inventory.enrollment_outcome``); only when nothing was refused is
anything written, each device in a transaction that checks its document again.
Enrolling the same certificate twice changes nothing; another certificate replaces a
device's only with ``--replace``, and never while a rotation is in flight.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click

from iot_remote_access.cli.errors import InputError, OperationError
from iot_remote_access.core.bounded_input import (
    MAX_FILE_BYTES,
    BoundedInputError,
    read_stream,
    read_text,
)

STDIN = "-"


@click.command("enroll")
@click.option(
    "--cloud",
    type=click.Choice(["gcp"]),
    required=True,
    help="Where the inventory is (AWS enrols through its provisioning).",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The GCP settings file (gcp.projectId, gcp.rotationService).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Make these certificates current for things enrolled with another one "
    "(never while a rotation is in flight).",
)
@click.argument("certificates", nargs=-1, required=True)
def enroll_command(
    cloud: str, settings_file: Path | None, replace: bool, certificates: tuple[str, ...]
) -> None:
    """Enrol devices by their current certificates (PEM files, or - for a bundle on stdin)."""
    from iot_remote_access.cli.certs_gcp import _firestore, _inventory, _settings
    from iot_remote_access.pubsub.enrollment import check_unique

    now = datetime.now(UTC)
    settings = _settings(settings_file)
    try:
        enrollments = check_unique(list(_read(certificates, now)))
    except BoundedInputError as error:
        raise InputError(str(error)) from None
    inventory = _inventory(settings)
    outcomes = _firestore(lambda: _check_all(inventory, enrollments, replace))
    counts = {"enrolled": 0, "replaced": 0, "unchanged": 0}
    for item in enrollments:
        outcome = _firestore(partial(_write, inventory, item, replace, now))
        counts[outcome] += 1
        if outcome != outcomes[item.thing]:  # someone changed it between check and write
            click.echo(f"note: {item.thing}: {outcome} (changed since it was checked)", err=True)
        click.echo(f"{outcome} {item.thing} notAfter {item.not_after.isoformat()}")
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()), err=True)


def _read(arguments: Iterable[str], now: datetime) -> Iterable[Any]:
    from iot_remote_access.pubsub.enrollment import read_bundle

    if list(arguments).count(STDIN) > 1:
        raise BoundedInputError(STDIN, "given twice; allowed: stdin once")
    for argument in arguments:
        if argument == STDIN:
            text = read_stream(sys.stdin.buffer, "<stdin>", max_bytes=MAX_FILE_BYTES)
            yield from read_bundle(text, "<stdin>", now)
        else:
            yield from read_bundle(read_text(Path(argument), what="certificate"), argument, now)


def _check_all(inventory: Any, enrollments: list[Any], replace: bool) -> dict[str, str]:
    """Every device's outcome as its document is now; the first conflict refuses them all."""
    from iot_remote_access.pubsub.rotation_inventory import EnrollmentConflict, enrollment_outcome

    outcomes = {}
    for item in enrollments:
        try:
            outcomes[item.thing] = enrollment_outcome(
                inventory.get(item.thing), item.certificate_id, replace=replace
            )
        except EnrollmentConflict as conflict:
            raise InputError(
                f"{item.source}: thing {item.thing!r}: {conflict}; nothing was enrolled"
            ) from None
    return outcomes


def _write(inventory: Any, item: Any, replace: bool, now: datetime) -> str:
    from iot_remote_access.pubsub.rotation_inventory import EnrollmentConflict

    try:
        outcome: str = inventory.enroll_checked(
            item.thing,
            certificate_id=item.certificate_id,
            not_after=item.not_after,
            serial=item.serial,
            now=now,
            replace=replace,
        )
    except EnrollmentConflict as conflict:  # it moved after the check (a rotation began)
        raise OperationError(
            f"{item.source}: thing {item.thing!r}: {conflict} (changed while enrolling; "
            "the devices listed above were enrolled, run again to finish)"
        ) from None
    return outcome
