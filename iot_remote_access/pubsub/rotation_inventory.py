"""The GCP device and certificate inventory in Firestore, and the stagger ledger.

One document per thing (document id = thing name) in ``collection``, with the same
fields as the AWS item (``core/inventory_item.py``): the current certificate, the
rotation state and, while a rotation is under way, the pending certificate; after
a confirmed rotation, the previous certificate until it is revoked.

Every state change is a Firestore transaction that reads the document and writes
only if it is in an expected state, so two deliveries racing on one device (a
redelivered CSR, a restarted service taking over) can never both proceed: the
loser gets :class:`StateConflict`. Firestore retries a transaction that lost a
race, and the retry sees the winner's write.

The planner's reads are equality queries on single fields (Firestore indexes
each field by default, no composite index is needed): ``expiryDay`` (one query
per day of the due window, never a scan of the fleet), ``slotHour`` while a
rotation is scheduled, ``revokePending`` while an old certificate awaits revocation.

Why Firestore: serverless with transactions and per-field indexes, the GCP
counterpart of the DynamoDB table; its emulator ships with the Google Cloud CLI, so
the tests run against the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from iot_remote_access.core.inventory_item import enrolled_item, slot_key, to_record
from iot_remote_access.core.rotation_plan import IN_FLIGHT, InventoryRecord, RotationState
from iot_remote_access.core.stagger import StaggerError, StaggerPolicy

Item = dict[str, Any]
#: Changes of one transition: field -> value, or :data:`DELETE` to remove the field.
Changes = dict[str, Any]
DELETE = firestore.DELETE_FIELD
DEFAULT_COLLECTION = "iot-device-inventory"
DEFAULT_LEDGER_COLLECTION = "iot-stagger-ledger"
#: Tries of a stagger placement's transaction before the issuance is retried later.
PLACE_ATTEMPTS = 10
#: Fields of an attempt, removed when it ends (confirmed, failed).
ATTEMPT_FIELDS = (
    "csrSha256",
    "issuingAt",
    "staggerCohort",
    "staggerOffset",
    "pendingCertificateId",
    "pendingCertificatePem",
    "pendingNotAfter",
    "pendingSerial",
)


#: Kept when an enrolment replaces a device's certificate: an old one awaiting revocation.
REVOCATION_FIELDS = ("previousCertificateId", "previousSerial", "revokePending")


class StateConflict(Exception):
    """The document was not in the state a transition expects (someone else moved it)."""


class EnrollmentConflict(Exception):
    """The thing is enrolled with another certificate (or mid-rotation): not overwritten."""


def enrollment_outcome(item: Item | None, certificate_id: str, *, replace: bool) -> str:
    """What enrolling ``certificate_id`` does to ``item`` (the document, None: absent):
    ``enrolled``, ``unchanged`` (the same certificate) or ``replaced`` (``replace`` only,
    never mid-rotation); :class:`EnrollmentConflict` otherwise."""
    if item is None:
        return "enrolled"
    current = str(item.get("certificateId", ""))
    if current == certificate_id:
        return "unchanged"
    if not replace:
        raise EnrollmentConflict(
            f"enrolled with another certificate ({current[:60]!r}); allowed: --replace "
            "to make this one current"
        )
    state = item.get("rotationState", RotationState.IDLE.value)
    if state in IN_FLIGHT:
        raise EnrollmentConflict(
            f"a rotation is in flight (rotationState {state}); allowed: --replace once it "
            "ended (confirmed, failed or timed out)"
        )
    return "replaced"


class FirestoreInventory:
    """Typed access to the inventory collection (a ``google.cloud.firestore.Client``)."""

    def __init__(
        self,
        client: firestore.Client,
        collection: str = DEFAULT_COLLECTION,
        ledger_collection: str = DEFAULT_LEDGER_COLLECTION,
    ) -> None:
        self.client = client
        self.collection = client.collection(collection)
        self.ledger_collection = client.collection(ledger_collection)

    # -- reads ---------------------------------------------------------------

    def get(self, thing: str) -> Item | None:
        snapshot = self.collection.document(thing).get()
        return snapshot.to_dict() if snapshot.exists else None

    def _where(self, field: str, value: object) -> Iterator[Item]:
        query = self.collection.where(filter=FieldFilter(field, "==", value))
        for snapshot in query.stream():
            item = snapshot.to_dict()
            if item is not None:
                yield item

    def expiring_on(self, days: Sequence[date]) -> Iterator[InventoryRecord]:
        """Devices whose current certificate expires on one of ``days`` (one query per day)."""
        for day in days:
            for item in self._where("expiryDay", day.isoformat()):
                yield to_record(item)

    def scheduled_in(self, hour: datetime) -> list[str]:
        return [item["thing"] for item in self._where("slotHour", slot_key(hour))]

    def revoke_pending(self) -> list[Item]:
        return list(self._where("revokePending", True))

    def scan_devices(self) -> Iterator[Item]:
        """Every device (``inventory export``; never used by the daily run)."""
        for snapshot in self.collection.order_by("thing").stream():
            item = snapshot.to_dict()
            if item is not None:
                yield item

    # -- writes --------------------------------------------------------------

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
        item = enrolled_item(
            thing, certificate_id=certificate_id, not_after=not_after, serial=serial, now=now
        )
        self.collection.document(thing).set(item)

    def enroll_checked(
        self,
        thing: str,
        *,
        certificate_id: str,
        not_after: datetime,
        serial: str,
        now: datetime,
        replace: bool = False,
    ) -> str:
        """Enrol idempotently, in one transaction: :func:`enrollment_outcome` decides on
        the document as read. A replaced device keeps an old certificate awaiting
        revocation (its ``previousCertificateId``), so the planner still revokes it."""
        reference = self.collection.document(thing)

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> str:
            snapshot = reference.get(transaction=transaction)
            item = snapshot.to_dict() if snapshot.exists else None
            outcome = enrollment_outcome(item, certificate_id, replace=replace)
            if outcome == "unchanged":
                return outcome
            values = enrolled_item(
                thing, certificate_id=certificate_id, not_after=not_after, serial=serial, now=now
            )
            kept = {k: item[k] for k in REVOCATION_FIELDS if item is not None and k in item}
            transaction.set(reference, {**values, **kept})
            return outcome

        outcome: str = apply(self.client.transaction())
        return outcome

    def transition(
        self,
        thing: str,
        expected: Sequence[RotationState] | None,
        changes: Changes | Callable[[Item], Changes],
    ) -> Item:
        """Apply ``changes`` in one transaction if ``thing`` is in an ``expected`` state.

        ``expected`` None: any state (the document must exist). ``changes`` may be a
        function of the document as read (for values derived from it). Returns the
        document as written; raises :class:`StateConflict` (nothing written) otherwise.
        """
        reference = self.collection.document(thing)
        allowed = None if expected is None else {state.value for state in expected}

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> Item:
            snapshot = reference.get(transaction=transaction)
            item = snapshot.to_dict() if snapshot.exists else None
            if item is None or (allowed is not None and item.get("rotationState") not in allowed):
                raise StateConflict(thing)
            values = changes(item) if callable(changes) else changes
            transaction.update(reference, values)
            return _merged(item, values)

        result: Item = apply(self.client.transaction())
        return result


def _merged(item: Mapping[str, Any], values: Changes) -> Item:
    merged = dict(item)
    for key, value in values.items():
        if value is DELETE:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def cleared(*fields: str) -> Changes:
    """Changes that remove ``fields``."""
    return dict.fromkeys(fields, DELETE)


def choose_day(policy: StaggerPolicy, loads: list[int], rank: int, thing: str) -> int:
    """The offset ``core.stagger.place`` gives the ``rank``-th issuance of a cohort whose
    days hold ``loads`` (read in the same transaction, so never stale): the first day of
    ``thing``'s probe order under the cap of its rank."""
    cap = policy.cap(rank)
    for offset in policy.probe(thing):
        if loads[offset] < cap:
            return offset
    # Impossible with counts written only here (window * cap >= rank > placed); a ledger
    # edited by hand could get here: the issuance is retried, never placed over the cap.
    raise StaggerError(f"cohort: no expiry day under {cap} for {thing!r} (rank {rank})")


class FirestoreLedger:
    """The stagger ledger (``core.stagger.CohortLedger``) in Firestore transactions.

    One document per cohort (``YYYY-MM-DD``): ``joined`` and one counter per offset day.
    """

    def __init__(self, inventory: FirestoreInventory) -> None:
        self.client = inventory.client
        self.collection = inventory.ledger_collection

    def join(self, cohort: str) -> int:
        reference = self.collection.document(cohort)

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> int:
            snapshot = reference.get(transaction=transaction)
            joined = int((snapshot.to_dict() or {}).get("joined", 0)) + 1
            transaction.set(reference, {"joined": joined}, merge=True)
            return joined

        rank: int = apply(self.client.transaction())
        return rank

    def claim(self, cohort: str, offset: int, limit: int) -> bool:
        reference = self.collection.document(cohort)
        day = f"d{offset}"

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> bool:
            snapshot = reference.get(transaction=transaction)
            count = int((snapshot.to_dict() or {}).get(day, 0))
            if count >= limit:
                return False
            transaction.set(reference, {day: count + 1}, merge=True)
            return True

        claimed: bool = apply(self.client.transaction())
        return claimed

    def place(self, policy: StaggerPolicy, cohort: str, thing: str) -> int:
        """Join ``cohort`` and claim ``thing``'s day in one transaction; the offset.

        The same choice as ``core.stagger.assign_offset`` (the first day of the thing's
        probe order under the cap of its rank), read and written atomically: counts
        are exact, so the busiest day holds at most ``ceil(N / window_days)``, and one
        transaction replaces the two to four calls of a join and blind claims.
        """
        reference = self.collection.document(cohort)
        window = policy.window_days

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> int:
            item = reference.get(transaction=transaction).to_dict() or {}
            rank = int(item.get("joined", 0)) + 1
            loads = [int(item.get(f"d{i}", 0)) for i in range(window)]
            offset = choose_day(policy, loads, rank, thing)
            values = {"joined": rank, f"d{offset}": loads[offset] + 1}
            transaction.set(reference, values, merge=True)
            return offset

        # Every issuance of a day contends for this one document: more tries than default.
        offset: int = apply(self.client.transaction(max_attempts=PLACE_ATTEMPTS))
        return offset

    def loads(self, cohort: str, window_days: int) -> list[int]:
        item = self.collection.document(cohort).get().to_dict() or {}
        return [int(item.get(f"d{i}", 0)) for i in range(window_days)]
