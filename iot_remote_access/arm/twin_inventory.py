"""The Azure certificate inventory: one ``certificate`` object in each device twin's tags.

Why twin tags and not another store: the record lives and dies with the device identity
(deleting the device deletes it), needs no resource beyond the hub, is written with the
twin's etag (no lost update between two writers), and IoT Hub's query language selects
the certificates due in the lead window without reading the rest of the fleet. Tags are
invisible to the device, so a device cannot rewrite its own rotation state.

``tags.certificate`` (times as ``YYYY-MM-DDTHH:MM:SSZ``, which compare as strings in
time order, the way IoT Hub queries compare them)::

    serial, notAfter, expiryDay, status         the working certificate
    state, attempts, lastAttemptAt, lastRotationAt, lastError    the rotation
    placedCohort, placedOffset                  the stagger placement of the last issuance
    csrSha256, pending: {serial, notAfter, certificatePem}       the one being issued
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from iot_remote_access.arm.hub_service import Twin, TwinClient
from iot_remote_access.core.rotation_plan import InventoryRecord, RotationState

TAG = "certificate"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class InventoryError(ValueError):
    """A twin's certificate tags cannot be read: names the device, the field and the value."""


def stamp(moment: datetime) -> str:
    """A time as the tags store it (UTC, second precision, sortable as text)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_stamp(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise InventoryError(f"{where}: {str(value)[:40]!r}; allowed: {TIME_FORMAT}")
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise InventoryError(f"{where}: {value[:40]!r}; allowed: {TIME_FORMAT}") from None


def due_query(due_before: datetime) -> str:
    """The twins whose certificate expires by ``due_before`` (the planner's read)."""
    # Not SQL, and only a formatted time reaches the text.
    return f"SELECT * FROM devices WHERE tags.{TAG}.notAfter <= '{stamp(due_before)}'"  # noqa: S608


def cohort_query(cohort: str) -> str:
    """The twins whose last issuance was placed in stagger cohort ``cohort`` (``YYYY-MM-DD``)."""
    datetime.strptime(cohort, "%Y-%m-%d")  # only a date ever reaches the query text
    return f"SELECT * FROM devices WHERE tags.{TAG}.placedCohort = '{cohort}'"  # noqa: S608


ALL_QUERY = f"SELECT * FROM devices WHERE is_defined(tags.{TAG})"  # noqa: S608


def certificate_tags(twin: Twin) -> dict[str, Any]:
    tags = twin.tags.get(TAG)
    return tags if isinstance(tags, dict) else {}


def record_of(twin: Twin) -> InventoryRecord:
    """The planner's view of one twin."""
    tags = certificate_tags(twin)
    where = f"device {twin.device_id!r}: tags.{TAG}"
    try:
        state = RotationState(tags.get("state") or RotationState.IDLE)
    except ValueError:
        raise InventoryError(
            f"{where}.state: {str(tags.get('state'))[:40]!r}; allowed: "
            + ", ".join(s.value for s in RotationState)
        ) from None
    attempts = tags.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise InventoryError(f"{where}.attempts: {str(attempts)[:20]!r}; allowed: an integer >= 0")
    return InventoryRecord(
        thing=twin.device_id,
        certificate_id=str(tags.get("serial") or ""),
        not_after=parse_stamp(tags.get("notAfter"), f"{where}.notAfter"),
        status=str(tags.get("status") or "ACTIVE"),
        rotation_state=state,
        attempts=attempts,
        last_attempt_at=_optional(tags, "lastAttemptAt", where),
        last_rotation_at=_optional(tags, "lastRotationAt", where),
    )


def _optional(tags: dict[str, Any], key: str, where: str) -> datetime | None:
    value = tags.get(key)
    return None if value in (None, "") else parse_stamp(value, f"{where}.{key}")


class TwinInventory:
    """Reads and writes the inventory through a :class:`TwinClient`."""

    def __init__(self, client: TwinClient) -> None:
        self.client = client

    def due(self, due_before: datetime) -> Iterator[InventoryRecord]:
        for twin in self.due_twins(due_before):
            yield record_of(twin)

    def due_twins(self, due_before: datetime) -> Iterator[Twin]:
        return self.client.query(due_query(due_before))

    def all(self) -> Iterator[Twin]:
        return self.client.query(ALL_QUERY)

    def cohort(self, cohort: str) -> Iterator[Twin]:
        return self.client.query(cohort_query(cohort))

    def get(self, thing: str) -> Twin:
        return self.client.get(thing)

    def update(self, twin: Twin, **changes: Any) -> Twin:
        """Merge ``changes`` into ``tags.certificate`` if the twin is unchanged since read."""
        return self.client.patch_tags(twin.device_id, {TAG: changes}, twin.etag)
