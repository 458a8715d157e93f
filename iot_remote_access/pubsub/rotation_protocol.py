"""The GCP rotation protocol: one CSR or confirmation in, inventory and issuer moved, answer out.

Transport-free (the Pub/Sub consumer is ``rotation_service.py``): each message gives a
:class:`Decision` - acknowledge it, or leave it for a redelivery after ``retry_after``
seconds. Invariants, whatever fails and wherever the process stops:

- one CSR gives at most one certificate: REQUESTED -> ISSUING is a Firestore
  transaction that records the CSR's SHA-256, and the issuer gets a request id derived
  from thing and CSR, so a redelivered CSR or a restarted service that takes over an
  ISSUING attempt (after ``issuing_lease``) gets the *same* certificate back;
- nothing is half-done: when the issuer throttles (``IssuerThrottled``) or fails, the
  document goes back to REQUESTED and the message is retried later; the stagger
  placement stays recorded, so a retry never claims a second expiry day;
- the old certificate is revoked only after the device confirmed; a revocation that
  fails stays pending (``revokePending``) and the daily planner retries it;
- every refusal is the same as on AWS (``core/csr_policy``: status and reason), sent to
  the device on its certificate topic, written to an audit record and, for a known
  thing, kept in its inventory document (``lastRefusal``).

Who sent a message is the ``thing`` attribute the bridge sets from the MQTT topic (the
broker's ACL lets a device publish only on its own topics), never the payload.

With an access ledger (``ledger``: the chain in the locked anchor bucket), each decision
is recorded before it takes effect, as on AWS: ``cert.issue`` before the certificate is
stored or sent (unrecorded: back to REQUESTED, retried; the retry's request id gets the
same certificate from CA Service, so none is lost or doubled), ``cert.rotate`` before
the inventory switches to the new certificate, ``cert.revoke`` after the CA revoked and
before the inventory forgets the old one (unrecorded: ``revokePending`` stays, the
planner revokes again, which CA Service answers as done, and records it then).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from iot_remote_access.core import strict_json
from iot_remote_access.core.certificate_issuer import (
    CertificateIssuer,
    IssuedCertificate,
    IssuerRefused,
    IssuerThrottled,
)
from iot_remote_access.core.csr import MAX_CSR_BYTES
from iot_remote_access.core.csr_policy import CsrRefusal, Verdict, rotation_verdict, screen_csr
from iot_remote_access.core.inventory_item import iso
from iot_remote_access.core.ledger import LedgerUnavailable
from iot_remote_access.core.ledger_records import (
    CERT_ISSUE,
    CERT_REVOKE,
    CERT_ROTATE,
    LedgerAppender,
    certificate_record,
)
from iot_remote_access.core.rotation_messages import issued_body, rejected_body
from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.core.stagger import StaggerError, StaggerPolicy, cohort_of
from iot_remote_access.core.topics import TopicModel, TopicModelError, validate_thing_name
from iot_remote_access.pubsub.rotation_inventory import (
    ATTEMPT_FIELDS,
    DELETE,
    FirestoreInventory,
    FirestoreLedger,
    Item,
    StateConflict,
    cleared,
)

audit_log = logging.getLogger("iot_remote_access.audit")
log = logging.getLogger("iot_remote_access.pubsub.rotation")
#: A CSR message: ``{"csr": PEM}``, the PEM at most ``core.csr.MAX_CSR_BYTES``.
MAX_CSR_MESSAGE_BYTES = MAX_CSR_BYTES + 1024
#: A confirmation: ``{}`` (the device module sends exactly that).
MAX_CONFIRM_MESSAGE_BYTES = 1024
#: Namespace of the issuer request ids (a UUID per thing and CSR).
_REQUEST_NAMESPACE = uuid.UUID("7f1d3c2e-7b7a-4d3c-9a51-6f1c2b0e9d41")


class Replies(Protocol):
    """Where answers go: the device's certificate topic (through Pub/Sub and the bridge)."""

    def send(self, thing: str, body: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Decision:
    """What to do with the message: ack (``retry_after`` None) or redeliver after that many s."""

    outcome: str
    status: int = 200
    retry_after: float | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def request_id(thing: str, fingerprint: str) -> str:
    """The issuer's idempotency key: the same thing and CSR give the same certificate."""
    return str(uuid.uuid5(_REQUEST_NAMESPACE, f"{thing}\n{fingerprint}"))


class RotationProtocol:
    """Handles CSRs and confirmations for one fleet.

    :param issuing_lease: seconds an ISSUING attempt belongs to the delivery that began
        it; after that a redelivery of the same CSR takes it over. Default 60.
    :param retry_seconds: when a throttled or failed issuance is tried again. Default 30.
    """

    def __init__(
        self,
        *,
        inventory: FirestoreInventory,
        issuer: CertificateIssuer,
        replies: Replies,
        topics: TopicModel | None = None,
        stagger: StaggerPolicy | None = None,
        issuing_lease: float = 60.0,
        retry_seconds: float = 30.0,
        clock: Callable[[], datetime] = _now,
        ledger: LedgerAppender | None = None,
    ) -> None:
        self.inventory = inventory
        self.ledger = ledger
        self.issuer = issuer
        self.replies = replies
        self.topics = topics or TopicModel()
        self.stagger = stagger or StaggerPolicy()
        self.issuing_lease = timedelta(seconds=issuing_lease)
        self.retry_seconds = retry_seconds
        self._clock = clock

    # -- CSR -> certificate ---------------------------------------------------------------

    def on_csr(self, data: bytes, attributes: dict[str, str]) -> Decision:
        thing = _sender(attributes)
        if thing is None:
            return self._unaddressed("rotation.csr", attributes)
        try:
            return self._on_csr(thing, data)
        except CsrRefusal as refusal:
            return self._refuse("rotation.csr", thing, refusal)

    def _on_csr(self, thing: str, data: bytes) -> Decision:
        document = _document(data, MAX_CSR_MESSAGE_BYTES, "csr message")
        csr = screen_csr(document.get("csr"), thing)  # the rules every cloud's signer shares
        item = self.inventory.get(thing)
        now = self._clock()
        state = None if item is None else item.get("rotationState")
        fingerprint = None if item is None else item.get("csrSha256")
        if state == RotationState.ISSUING and fingerprint == csr.fingerprint:
            assert item is not None
            # No start time on record (written by hand): treat the lease as run out.
            issuing_at = item.get("issuingAt")
            started = datetime.fromisoformat(issuing_at) if issuing_at else now - self.issuing_lease
            if started + self.issuing_lease > now:  # another delivery is issuing it now
                left = (started + self.issuing_lease - now).total_seconds()
                return Decision("being-issued", 200, max(1.0, left))
            return self._issue(thing, item, csr.pem(), csr.fingerprint, now)  # take it over
        verdict = rotation_verdict(thing, csr, state=state, fingerprint_on_record=fingerprint)
        assert item is not None  # rotation_verdict refused a thing not in the inventory
        if verdict is Verdict.DUPLICATE:
            return self._answer(item, "duplicate")
        changes = {"rotationState": RotationState.ISSUING.value}
        changes |= {"csrSha256": csr.fingerprint, "issuingAt": iso(now)}
        try:
            item = self.inventory.transition(thing, [RotationState.REQUESTED], changes)
        except StateConflict:  # a racing delivery moved it: its redelivery sees where
            return Decision("raced", 200, 1.0)
        return self._issue(thing, item, csr.pem(), csr.fingerprint, now)

    def _issue(
        self, thing: str, item: Item, csr_pem: str, fingerprint: str, now: datetime
    ) -> Decision:
        try:
            offset = self._placement(thing, item, now)
            issued = self.issuer.issue(
                thing,
                csr_pem,
                timedelta(days=self.stagger.validity_days(offset)),
                request_id(thing, fingerprint),
            )
        except (IssuerThrottled, StaggerError) as error:
            self._roll_back(thing)
            self._audit("rotation.csr", "throttled", thing, 429, str(error)[:200])
            return Decision("throttled", 429, self.retry_seconds)
        except IssuerRefused as error:
            self._roll_back(thing)
            raise CsrRefusal(
                400, f"csr: the certificate authority refused it ({str(error)[:160]})"
            ) from None
        except Exception as error:  # the issuer unreachable: nothing issued, try again
            self._roll_back(thing)
            self._audit("rotation.csr", "retry", thing, 503, type(error).__name__)
            return Decision("issuer-failed", 503, self.retry_seconds)
        try:
            self._record(
                certificate_record(
                    CERT_ISSUE,
                    thing,
                    issued.name,
                    issued.serial_hex,
                    notAfter=iso(issued.not_after),
                    validityDays=(issued.not_after - now).days,
                    cloud="gcp",
                )
            )
        except LedgerUnavailable as error:
            self._roll_back(thing)
            self._audit("rotation.csr", "retry", thing, 503, f"ledger: {str(error)[:160]}")
            return Decision("ledger-unavailable", 503, self.retry_seconds)
        try:
            item = self.inventory.transition(
                thing, [RotationState.ISSUING], _pending(issued, fingerprint)
            )
        except StateConflict:  # a takeover finished first: it holds the same certificate
            current = self.inventory.get(thing)
            if current is None or current.get("rotationState") != RotationState.ISSUED:
                return Decision("raced", 200, 1.0)
            item = current
        self._audit("rotation.csr", "issued", thing, 200, None, serial=issued.serial_hex)
        return self._answer(item, "issued")

    def _placement(self, thing: str, item: Item, now: datetime) -> int:
        """The stagger offset: the recorded one on a retry, else a new claim, recorded first."""
        cohort = cohort_of(now)
        if item.get("staggerCohort") == cohort and "staggerOffset" in item:
            return int(item["staggerOffset"])
        offset = FirestoreLedger(self.inventory).place(self.stagger, cohort, thing)
        self.inventory.transition(
            thing,
            [RotationState.ISSUING],
            {"staggerCohort": cohort, "staggerOffset": offset},
        )
        return offset

    def _roll_back(self, thing: str) -> None:
        """ISSUING -> REQUESTED: the device's CSR may be signed on a later try."""
        with contextlib.suppress(StateConflict):  # a takeover moved it on
            self.inventory.transition(
                thing,
                [RotationState.ISSUING],
                {"rotationState": RotationState.REQUESTED.value, **cleared("issuingAt")},
            )

    def _answer(self, item: Item, outcome: str) -> Decision:
        self.replies.send(item["thing"], issued_body(self.topics, item))
        return Decision(outcome)

    # -- confirmation -> revocation -------------------------------------------------------

    def on_confirm(self, data: bytes, attributes: dict[str, str]) -> Decision:
        thing = _sender(attributes)
        if thing is None:
            return self._unaddressed("rotation.confirm", attributes)
        try:
            _document(data, MAX_CONFIRM_MESSAGE_BYTES, "confirm message")
            return self._on_confirm(thing)
        except CsrRefusal as refusal:
            return self._refuse("rotation.confirm", thing, refusal)

    def _on_confirm(self, thing: str) -> Decision:
        item = self.inventory.get(thing)
        if item is None:
            raise CsrRefusal(404, f"thing: {thing!r} is not in the certificate inventory")
        if item.get("rotationState") != RotationState.ISSUED:
            if item.get("lastRotationAt") and not item.get("pendingCertificateId"):
                return Decision("already-confirmed")
            raise CsrRefusal(409, f"thing: {thing!r} has no certificate awaiting confirmation")
        now = self._clock()
        try:
            self._record(
                certificate_record(
                    CERT_ROTATE,
                    thing,
                    item["pendingCertificateId"],
                    item.get("pendingSerial"),
                    previousCertificateId=item.get("certificateId"),
                    cloud="gcp",
                )
            )
        except LedgerUnavailable as error:  # nothing changed: the redelivery records it
            self._audit("rotation.confirm", "retry", thing, 503, f"ledger: {str(error)[:160]}")
            return Decision("ledger-unavailable", 503, self.retry_seconds)
        try:
            item = self.inventory.transition(thing, [RotationState.ISSUED], _confirmed(now))
        except StateConflict:
            return Decision("already-confirmed")
        self._audit("rotation.confirm", "rotated", thing, 200, None, serial=item.get("serial"))
        self.retire_previous(item)
        return Decision("confirmed")

    def retire_previous(self, item: Item) -> bool:
        """Revoke the certificate a confirmed rotation replaced; False: left for later."""
        thing, previous = item["thing"], item.get("previousCertificateId")
        if not previous:
            return True
        decision = "revoked"
        try:
            self.issuer.revoke(previous)
        except IssuerRefused as error:  # not this CA's (a factory certificate): nothing to do
            decision = f"not-revoked: {str(error)[:120]}"
        except Exception as error:  # throttled or unreachable: the daily planner retries
            self._audit("rotation.revoke", "retry", thing, 503, type(error).__name__)
            return False
        try:
            self._record(
                certificate_record(
                    CERT_REVOKE,
                    thing,
                    previous,
                    item.get("previousSerial") or None,
                    reason="rotated" if decision == "revoked" else decision,
                    cloud="gcp",
                )
            )
        except LedgerUnavailable as error:  # revokePending stays: revoked and recorded later
            self._audit("rotation.revoke", "retry", thing, 503, f"ledger: {str(error)[:160]}")
            return False

        def done(current: Item) -> dict[str, Any]:
            if current.get("previousCertificateId") != previous:
                raise StateConflict(thing)
            return {
                **cleared("previousCertificateId", "previousSerial", "revokePending"),
                "lastRevokedCertificateId": previous,
                "lastRevokedAt": iso(self._clock()),
            }

        with contextlib.suppress(StateConflict):  # revoked by another run meanwhile
            self.inventory.transition(thing, None, done)
        self._audit("rotation.revoke", decision, thing, 200, None, certificate=previous)
        return True

    # -- refusals, audit and ledger -------------------------------------------------------

    def _record(self, data: dict[str, Any]) -> None:
        if self.ledger is not None:
            self.ledger.append(data)

    def _refuse(self, event: str, thing: str, refusal: CsrRefusal) -> Decision:
        """Answer the device, remember the refusal on its document, write the audit record."""
        now = self._clock()
        self._audit(event, "refused", thing, refusal.status, refusal.reason)
        refused = {"status": refusal.status, "reason": refusal.reason[:300], "event": event}
        # Not in the inventory (404): the audit record is the only record.
        with contextlib.suppress(StateConflict):
            self.inventory.transition(thing, None, {"lastRefusal": {**refused, "at": iso(now)}})
        self.replies.send(thing, rejected_body(refusal.reason))
        return Decision("refused", refusal.status)

    def _unaddressed(self, event: str, attributes: dict[str, str]) -> Decision:
        shown = str(attributes.get("thing"))[:80]
        reason = f"attribute 'thing': {shown!r} is not a thing name; nobody to answer"
        self._audit(event, "refused", None, 400, reason)
        return Decision("refused", 400)

    def _audit(
        self,
        event: str,
        decision: str,
        thing: str | None,
        status: int,
        reason: str | None,
        **fields: object,
    ) -> None:
        record: dict[str, object] = {"event": event, "decision": decision, "thing": thing}
        record["status"] = status
        record |= {"reason": reason, "cloud": "gcp", "at": iso(self._clock()), **fields}
        audit_log.info("rotation audit", extra={"audit": record})


def _sender(attributes: dict[str, str]) -> str | None:
    try:
        return validate_thing_name(attributes.get("thing"))
    except TopicModelError:
        return None


def _document(data: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(data) > limit:
        raise CsrRefusal(413, f"{what}: {len(data)} bytes; allowed: at most {limit}")
    try:
        document = strict_json.loads(data, max_bytes=limit, max_depth=2)
    except strict_json.StrictJsonError as error:
        raise CsrRefusal(400, f"{what}: {error}; allowed: a JSON object") from None
    if not isinstance(document, dict):
        raise CsrRefusal(400, f"{what}: a {type(document).__name__}; allowed: a JSON object")
    return document


def _pending(issued: IssuedCertificate, fingerprint: str) -> dict[str, Any]:
    pem = issued.pem.strip() + "\n" + "".join(c.strip() + "\n" for c in issued.chain_pem)
    return {
        "rotationState": RotationState.ISSUED.value,
        "csrSha256": fingerprint,
        "pendingCertificateId": issued.name,
        "pendingCertificatePem": pem,
        "pendingNotAfter": iso(issued.not_after),
        "pendingSerial": issued.serial_hex,
    }


def _confirmed(now: datetime) -> Callable[[Item], dict[str, Any]]:
    """ISSUED -> IDLE: the pending certificate becomes current, the old one awaits revocation."""

    def changes(item: Item) -> dict[str, Any]:
        not_after = datetime.fromisoformat(item["pendingNotAfter"])
        return {
            "rotationState": RotationState.IDLE.value,
            "certificateId": item["pendingCertificateId"],
            "notAfter": item["pendingNotAfter"],
            "expiryDay": not_after.astimezone(UTC).date().isoformat(),
            "serial": item.get("pendingSerial", ""),
            "attempts": 0,
            "lastRotationAt": iso(now),
            "previousCertificateId": item["certificateId"],
            "previousSerial": item.get("serial", ""),
            "revokePending": True,
            "lastError": DELETE,
            **cleared(*ATTEMPT_FIELDS),
        }

    return changes
