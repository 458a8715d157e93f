"""The device and certificate inventory in DynamoDB, and the stagger ledger.

One item per thing (partition key ``thing``): its current certificate, its
rotation state and, while a rotation is under way, the pending certificate; after
a confirmed rotation, the previous certificate until its grace period ends.
Every state change is a conditional write, so two invocations racing on one
device (a redelivered CSR, a late confirmation) can never both proceed.

Sparse indexes keep every sweep to a query of exactly what is due:
``byExpiryDay`` (``expiryDay`` = day of the current certificate's not-after),
``bySlot`` (``slotHour`` while a rotation is scheduled) and ``byRevokeDay``
(``revokeDay`` while an old certificate waits for deletion).

The stagger ledger lives in the same table under keys that can never be thing
names (``#`` is not allowed in one): ``#stagger#YYYY-MM-DD`` per cohort.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from iot_remote_access.core.aws_schema import EXPIRY_INDEX, REVOKE_INDEX, SLOT_INDEX
from iot_remote_access.core.inventory_item import (
    enrolled_item,
    iso,
    parse_time,
    slot_key,
    to_record,
)
from iot_remote_access.core.rotation_plan import InventoryRecord, RotationState

LEDGER_PREFIX = "#stagger#"

Item = dict[str, Any]


class StateConflict(Exception):
    """The item was not in the state a transition expects (someone else moved it)."""


def _conditional(error: ClientError) -> bool:
    code: object = error.response.get("Error", {}).get("Code")
    return code == "ConditionalCheckFailedException"


class Inventory:
    """Typed access to the inventory table (a boto3 ``Table`` resource)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        #: DynamoDB calls made, by operation: the benchmark and tests read it.
        self.calls: dict[str, int] = {}

    def _count(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1

    # -- reads ---------------------------------------------------------------

    def get(self, thing: str) -> Item | None:
        self._count("GetItem")
        item: Item | None = self.table.get_item(Key={"thing": thing}, ConsistentRead=True).get(
            "Item"
        )
        return item

    def _query(self, index: str, key: str, value: str) -> Iterator[Item]:
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": Key(key).eq(value),
        }
        while True:
            self._count("Query")
            page = self.table.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def expiring_on(self, days: Sequence[date]) -> Iterator[InventoryRecord]:
        """Devices whose current certificate expires on one of ``days`` (one query per day)."""
        for day in days:
            for item in self._query(EXPIRY_INDEX, "expiryDay", day.isoformat()):
                yield to_record(item)

    def scheduled_in(self, hour: datetime) -> list[str]:
        return [item["thing"] for item in self._query(SLOT_INDEX, "slotHour", slot_key(hour))]

    def revoke_due(self, days: Sequence[date]) -> list[Item]:
        return [
            item for day in days for item in self._query(REVOKE_INDEX, "revokeDay", day.isoformat())
        ]

    def scan_devices(self) -> Iterator[Item]:
        """Every device item (the inventory export; never used by the daily sweep)."""
        kwargs: dict[str, Any] = {}
        while True:
            self._count("Scan")
            page = self.table.scan(**kwargs)
            for item in page.get("Items", []):
                if not str(item["thing"]).startswith(LEDGER_PREFIX):
                    yield item
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- writes --------------------------------------------------------------

    def _update(self, thing: str, **kwargs: Any) -> Item:
        self._count("UpdateItem")
        try:
            response = self.table.update_item(
                Key={"thing": thing}, ReturnValues="ALL_NEW", **kwargs
            )
        except ClientError as error:
            if _conditional(error):
                raise StateConflict(thing) from None
            raise
        attributes: Item = response["Attributes"]
        return attributes

    def enroll(
        self,
        thing: str,
        *,
        certificate_id: str,
        not_after: datetime,
        serial: str | None = None,
        now: datetime,
    ) -> None:
        """Add a device with its current certificate (provisioning writes this)."""
        self._count("PutItem")
        item = enrolled_item(
            thing, certificate_id=certificate_id, not_after=not_after, serial=serial, now=now
        )
        self.table.put_item(Item=item)

    def schedule(self, thing: str, hour: datetime, *, expected: Sequence[RotationState]) -> Item:
        """Give a due device its slot (only from a state in which nothing is under way)."""
        return self._update(
            thing,
            UpdateExpression="SET rotationState = :s, slotHour = :h",
            ConditionExpression=Attr("rotationState").is_in([s.value for s in expected]),
            ExpressionAttributeValues={":s": RotationState.SCHEDULED.value, ":h": slot_key(hour)},
        )

    def start(self, thing: str, hour: datetime, now: datetime) -> Item:
        """SCHEDULED (in ``hour``) -> REQUESTED: count the attempt before telling the device."""
        return self._update(
            thing,
            UpdateExpression=(
                "SET rotationState = :r, lastAttemptAt = :now ADD attempts :one REMOVE slotHour"
            ),
            ConditionExpression=Attr("rotationState").eq(RotationState.SCHEDULED.value)
            & Attr("slotHour").eq(slot_key(hour)),
            ExpressionAttributeValues={
                ":r": RotationState.REQUESTED.value,
                ":now": iso(now),
                ":one": 1,
            },
        )

    def unstart(self, thing: str, hour: datetime) -> None:
        """Undo :meth:`start` when the device could not be told (the message is retried)."""
        self._update(
            thing,
            UpdateExpression="SET rotationState = :s, slotHour = :h ADD attempts :minus",
            ConditionExpression=Attr("rotationState").eq(RotationState.REQUESTED.value),
            ExpressionAttributeValues={
                ":s": RotationState.SCHEDULED.value,
                ":h": slot_key(hour),
                ":minus": -1,
            },
        )

    def begin_issuing(self, thing: str, csr_sha256: str, now: datetime) -> Item:
        """REQUESTED -> ISSUING, remembering which CSR is being signed."""
        return self._update(
            thing,
            UpdateExpression="SET rotationState = :i, csrSha256 = :c, issuingAt = :now",
            ConditionExpression=Attr("rotationState").eq(RotationState.REQUESTED.value),
            ExpressionAttributeValues={
                ":i": RotationState.ISSUING.value,
                ":c": csr_sha256,
                ":now": iso(now),
            },
        )

    def remember_stagger(self, thing: str, cohort: str, offset: int) -> None:
        """Record the placement before issuing, so that a retry reuses it (never claims twice)."""
        self._update(
            thing,
            UpdateExpression="SET staggerCohort = :c, staggerOffset = :o",
            ConditionExpression=Attr("rotationState").eq(RotationState.ISSUING.value),
            ExpressionAttributeValues={":c": cohort, ":o": offset},
        )

    def record_registered(self, thing: str, certificate_id: str) -> None:
        """Note a registered, not yet attached certificate, so that cleanup can find it."""
        self._update(
            thing,
            UpdateExpression="SET pendingCertificateId = :p",
            ConditionExpression=Attr("rotationState").eq(RotationState.ISSUING.value),
            ExpressionAttributeValues={":p": certificate_id},
        )

    def issued(
        self,
        thing: str,
        *,
        certificate_id: str,
        certificate_pem: str,
        not_after: datetime,
        serial: str,
    ) -> Item:
        """ISSUING -> ISSUED: the new certificate is attached and sent; wait for confirmation."""
        return self._update(
            thing,
            UpdateExpression=(
                "SET rotationState = :s, pendingCertificateId = :p, pendingNotAfter = :n, "
                "pendingSerial = :serial, pendingCertificatePem = :pem"
            ),
            ConditionExpression=Attr("rotationState").eq(RotationState.ISSUING.value),
            ExpressionAttributeValues={
                ":s": RotationState.ISSUED.value,
                ":p": certificate_id,
                ":n": iso(not_after),
                ":serial": serial,
                ":pem": certificate_pem,
            },
        )

    def back_to_requested(self, thing: str) -> None:
        """ISSUING -> REQUESTED after a failure cleaned up: the device may send its CSR again."""
        self._update(
            thing,
            UpdateExpression=(
                "SET rotationState = :r REMOVE csrSha256, issuingAt, pendingCertificateId"
            ),
            ConditionExpression=Attr("rotationState").eq(RotationState.ISSUING.value),
            ExpressionAttributeValues={":r": RotationState.REQUESTED.value},
        )

    def confirmed(self, item: Item, now: datetime, revoke_day: date) -> Item:
        """ISSUED -> IDLE: the pending certificate becomes current; the old one awaits deletion."""
        not_after = parse_time(item["pendingNotAfter"])
        assert not_after is not None
        values: Item = {
            ":idle": RotationState.IDLE.value,
            ":cert": item["pendingCertificateId"],
            ":na": item["pendingNotAfter"],
            ":day": not_after.date().isoformat(),
            ":serial": item.get("pendingSerial", ""),
            ":zero": 0,
            ":now": iso(now),
            ":old": item["certificateId"],
            ":oldserial": item.get("serial", ""),
            ":revoke": revoke_day.isoformat(),
        }
        return self._update(
            item["thing"],
            UpdateExpression=(
                "SET rotationState = :idle, certificateId = :cert, notAfter = :na, "
                "expiryDay = :day, serial = :serial, attempts = :zero, lastRotationAt = :now, "
                "previousCertificateId = :old, previousSerial = :oldserial, revokeDay = :revoke "
                "REMOVE pendingCertificateId, pendingNotAfter, pendingSerial, "
                "pendingCertificatePem, csrSha256, issuingAt, staggerCohort, staggerOffset, "
                "lastError"
            ),
            ConditionExpression=Attr("rotationState").eq(RotationState.ISSUED.value)
            & Attr("pendingCertificateId").eq(item["pendingCertificateId"]),
            ExpressionAttributeValues=values,
        )

    def failed(self, thing: str, *, expected: RotationState, reason: str) -> Item:
        """An in-flight attempt timed out or failed for good: FAILED, pending fields cleared."""
        return self._update(
            thing,
            UpdateExpression=(
                "SET rotationState = :f, lastError = :why REMOVE pendingCertificateId, "
                "pendingNotAfter, pendingSerial, pendingCertificatePem, csrSha256, issuingAt, "
                "staggerCohort, staggerOffset"
            ),
            ConditionExpression=Attr("rotationState").eq(expected.value),
            ExpressionAttributeValues={":f": RotationState.FAILED.value, ":why": reason[:200]},
        )

    def revoked(self, thing: str, certificate_id: str) -> None:
        self._update(
            thing,
            UpdateExpression="REMOVE previousCertificateId, previousSerial, revokeDay",
            ConditionExpression=Attr("previousCertificateId").eq(certificate_id),
        )


class DynamoLedger:
    """The stagger ledger (``core.stagger.CohortLedger``) with atomic DynamoDB counters."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def join(self, cohort: str) -> int:
        item = self.inventory._update(
            LEDGER_PREFIX + cohort,
            UpdateExpression="ADD joined :one",
            ExpressionAttributeValues={":one": 1},
        )
        return int(item["joined"])

    def claim(self, cohort: str, offset: int, limit: int) -> bool:
        day = f"d{offset}"
        try:
            self.inventory._update(
                LEDGER_PREFIX + cohort,
                UpdateExpression="ADD #d :one",
                ConditionExpression="attribute_not_exists(#d) OR #d < :limit",
                ExpressionAttributeNames={"#d": day},
                ExpressionAttributeValues={":one": 1, ":limit": Decimal(limit)},
            )
        except StateConflict:
            return False
        return True

    def loads(self, cohort: str, window_days: int) -> list[int]:
        item = self.inventory.get(LEDGER_PREFIX + cohort) or {}
        return [int(item.get(f"d{i}", 0)) for i in range(window_days)]
