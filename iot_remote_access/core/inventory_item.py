"""The inventory item: one device as a flat mapping, the same fields on every cloud.

AWS keeps it in DynamoDB, GCP in Firestore; both store times as ISO 8601 UTC text
(it sorts as time does) and read an item into ``rotation_plan.InventoryRecord`` here,
so the planner sees the same records whichever store they came from.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from iot_remote_access.core.rotation_plan import InventoryRecord, RotationState


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def slot_key(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H")


def to_record(item: Mapping[str, Any]) -> InventoryRecord:
    not_after = parse_time(item["notAfter"])
    assert not_after is not None
    return InventoryRecord(
        thing=item["thing"],
        certificate_id=item["certificateId"],
        not_after=not_after,
        status=item.get("status", "ACTIVE"),
        rotation_state=RotationState(item.get("rotationState", RotationState.IDLE)),
        attempts=int(item.get("attempts", 0)),
        last_attempt_at=parse_time(item.get("lastAttemptAt")),
        last_rotation_at=parse_time(item.get("lastRotationAt")),
    )


def enrolled_item(
    thing: str, *, certificate_id: str, not_after: datetime, serial: str | None, now: datetime
) -> dict[str, Any]:
    """A new device's item: its current certificate, nothing under way."""
    item: dict[str, Any] = {
        "thing": thing,
        "certificateId": certificate_id,
        "notAfter": iso(not_after),
        "expiryDay": not_after.astimezone(UTC).date().isoformat(),
        "status": "ACTIVE",
        "rotationState": RotationState.IDLE.value,
        "attempts": 0,
        "enrolledAt": iso(now),
    }
    if serial:
        item["serial"] = serial
    return item
