"""The Azure rotation service: the AWS rotation protocol over IoT Hub direct methods and twins.

One pass (``run_once``, what a scheduled job runs every hour) does what the AWS planner,
signer and confirmer do between them:

1. plan from the twin inventory (``core/rotation_plan``, the same planner as AWS);
   attempts past their timeout are marked FAILED and retried after the backoff;
2. for each slot that has come due: mark the twin REQUESTED, call the device's
   ``requestCsr`` direct method; the answer carries the CSR its new key signed;
3. screen the CSR exactly as the AWS signer does (``core/csr_policy``), mark ISSUING
   (with the twin's etag: a CSR racing another loses), place the certificate in its
   stagger cohort, issue through a :class:`CertificateIssuer` (the enrollment group's CA),
   mark ISSUED with the pending certificate, and call ``installCertificate`` with
   ``{"status": "issued", "certificatePem": <leaf + chain>}`` (a refusal is
   ``{"status": "rejected", "reason": ...}``, the messages of the AWS certificate topic);
4. the device re-provisions through DPS with the new certificate, connects to the hub
   with it and reports ``certificateRotation.serial``; the next pass sees that reported
   serial, makes the new certificate the working one in the inventory and revokes the old.
   Until then each pass sends the stored certificate again (direct methods are not queued
   for a device that was offline or restarting).

A device that never confirms keeps its old certificate (still valid in the hub) and is
retried; nothing here removes a working certificate. Every step is a conditional twin
write, so a service restarted mid-rotation resumes from the tags: an ISSUED device gets
the same stored certificate again (``Verdict.DUPLICATE``), never a second one.
One service instance per hub: the stagger counts of the day are read from the twins at
start and then kept in memory (``seeded_ledger``).

With an access ledger (``ledger``: the chain in the locked anchor container), every
certificate decision is recorded before it takes effect, as on AWS: ``cert.issue``
before the certificate is stored or sent (unrecorded, it is revoked and the attempt
fails), ``cert.rotate`` before the inventory switches to it, ``cert.revoke`` before the
old one is revoked. A ledger that is down delays a rotation; it never loses a record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.arm.direct_methods import DirectMethodClient, DirectMethodError
from iot_remote_access.arm.hub_service import HubServiceError, Twin
from iot_remote_access.arm.twin_inventory import (
    TwinInventory,
    certificate_tags,
    parse_stamp,
    record_of,
    stamp,
)
from iot_remote_access.core.certificate_issuer import (
    CertificateIssuer,
    IssuerRefused,
    IssuerThrottled,
)
from iot_remote_access.core.csr_policy import (
    ALREADY_BEING_SIGNED,
    CsrRefusal,
    Verdict,
    rotation_verdict,
    screen_csr,
)
from iot_remote_access.core.ledger import LedgerUnavailable
from iot_remote_access.core.ledger_records import (
    CERT_ISSUE,
    CERT_REVOKE,
    CERT_ROTATE,
    LedgerAppender,
    certificate_record,
)
from iot_remote_access.core.rotation_plan import (
    RotationPlan,
    RotationSettings,
    RotationState,
    floor_hour,
    plan_rotations,
)
from iot_remote_access.core.stagger import MemoryLedger, StaggerPolicy, assign_offset, cohort_of

REQUEST_CSR = "requestCsr"
INSTALL_CERTIFICATE = "installCertificate"
#: The reported property a device sets once connected with its new certificate.
REPORTED = "certificateRotation"
#: Seconds IoT Hub waits for the device's answer (a key generation on a slow device).
METHOD_TIMEOUT = 60

logger = logging.getLogger(__name__)


@dataclass
class PassReport:
    """What one pass did, per device (for logs, metrics and tests)."""

    plan: RotationPlan
    requested: list[str]
    issued: list[str]
    refused: dict[str, str]
    failed: dict[str, str]
    confirmed: list[str]
    #: Issued certificates sent again (not confirmed yet).
    resent: list[str] = field(default_factory=list)


def seeded_ledger(policy: StaggerPolicy, inventory: TwinInventory, cohort: str) -> MemoryLedger:
    """A ledger holding the placements already recorded in ``cohort`` (a restart loses none)."""
    ledger = MemoryLedger(policy.window_days)
    for twin in inventory.cohort(cohort):
        offset = certificate_tags(twin).get("placedOffset")
        if isinstance(offset, int) and 0 <= offset < policy.window_days:
            ledger.join(cohort)
            ledger.claim(cohort, offset, 1 << 30)
    return ledger


class AzureRotationService:
    """Plans, requests, issues, sends and confirms rotations for one hub."""

    def __init__(
        self,
        *,
        inventory: TwinInventory,
        methods: DirectMethodClient,
        issuer: CertificateIssuer,
        policy: StaggerPolicy,
        settings: RotationSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ledger: LedgerAppender | None = None,
    ) -> None:
        self.inventory = inventory
        self.ledger = ledger
        self.methods = methods
        self.issuer = issuer
        self.policy = policy
        self.settings = settings
        self.clock = clock
        self._ledgers: dict[str, MemoryLedger] = {}

    # -- the pass -----------------------------------------------------------------------------

    def plan(self, now: datetime) -> RotationPlan:
        return plan_rotations(self.inventory.due(now + self.settings.lead), now, self.settings)

    def run_once(self) -> PassReport:
        """One pass: confirm, time out, start this hour's slots. One query reads the fleet's
        due twins (tags and reported properties both), so confirming costs no extra read."""
        now = self.clock()
        start_of_hour = floor_hour(now)  # so this hour's slots are the plan's first
        twins = list(self.inventory.due_twins(start_of_hour + self.settings.lead))
        plan = plan_rotations(map(record_of, twins), start_of_hour, self.settings)
        report = PassReport(plan, [], [], {}, {}, [])
        report.confirmed = [t.device_id for t in twins if self._confirm_twin(t)]
        for thing in plan.timed_out:
            if thing not in report.confirmed:
                self._fail(thing, "timed out: no confirmation within attemptTimeoutHours")
        for twin in twins:
            if twin.device_id not in report.confirmed and twin.device_id not in plan.timed_out:
                self._resend(twin, report)
        for slot in plan.starting_before(now + timedelta(seconds=1)):
            if slot.thing not in report.confirmed:
                self._start(slot.thing, report)
        return report

    def _start(self, thing: str, report: PassReport) -> None:
        try:
            twin = self.inventory.get(thing)
            tags = certificate_tags(twin)
            self.inventory.update(
                twin,
                state=RotationState.REQUESTED.value,
                attempts=int(tags.get("attempts") or 0) + 1,
                lastAttemptAt=stamp(self.clock()),
                lastError=None,
            )
            answer = self.methods.invoke(
                thing, REQUEST_CSR, {"thing": thing}, response_timeout=METHOD_TIMEOUT
            )
        except (HubServiceError, DirectMethodError) as error:
            report.failed[thing] = str(error)[:200]
            self._fail(thing, str(error))
            return
        if answer.status != 200:  # the device's own answer: it could not make a CSR
            reason = f"{REQUEST_CSR}: the device answered {answer.status}"
            report.failed[thing] = reason
            self._fail(thing, reason)
            return
        report.requested.append(thing)
        csr = answer.payload.get("csr") if isinstance(answer.payload, dict) else None
        try:
            message = self.on_csr(thing, csr)
        except HubServiceError as error:  # a twin write failed: this device, not the pass
            report.failed[thing] = str(error)[:200]
            self._fail(thing, str(error))
            return
        if message["status"] == "issued":
            report.issued.append(thing)
        else:
            report.refused[thing] = message["reason"]

    # -- one CSR ------------------------------------------------------------------------------

    def on_csr(self, thing: str, csr_pem: object) -> dict[str, Any]:
        """Screen, issue and send; returns the message sent to the device."""
        try:
            message = self._issue(thing, csr_pem)
        except CsrRefusal as refusal:
            message = {"status": "rejected", "reason": refusal.reason}
            if refusal.reason != ALREADY_BEING_SIGNED and refusal.status in (400, 403):
                self._fail(thing, refusal.reason)
        except IssuerRefused as refusal:
            message = {"status": "rejected", "reason": str(refusal)[:300]}
            self._fail(thing, str(refusal))
        except IssuerThrottled:
            self._fail(thing, "the CA throttled; retried after the backoff")
            return {"status": "rejected", "reason": "throttled"}
        except LedgerUnavailable:
            self._fail(thing, "the access ledger is unavailable; retried after the backoff")
            return {"status": "rejected", "reason": "ledger unavailable"}
        self._send(thing, message)
        return message

    def _issue(self, thing: str, csr_pem: object) -> dict[str, Any]:
        csr = screen_csr(csr_pem, thing)
        twin = self._twin_or_none(thing)
        tags = certificate_tags(twin) if twin is not None else {}
        verdict = rotation_verdict(
            thing,
            csr,
            state=tags.get("state") if twin is not None else None,
            fingerprint_on_record=tags.get("csrSha256"),
        )
        assert twin is not None  # rotation_verdict refused an unknown thing (404)
        if verdict is Verdict.DUPLICATE:
            return _issued_message(tags["pending"]["certificatePem"])
        try:
            twin = self.inventory.update(
                twin, state=RotationState.ISSUING.value, csrSha256=csr.fingerprint
            )
        except HubServiceError as error:
            if error.status == 412:  # another delivery of this CSR got there first
                raise CsrRefusal(409, ALREADY_BEING_SIGNED) from None
            raise
        cohort, offset = self.place(thing)
        issued = self.issuer.issue(
            thing,
            csr.pem(),
            timedelta(days=self.policy.validity_days(offset)),
            request_id=f"{thing}:{csr.fingerprint}",
        )
        chain = "".join((issued.pem, *issued.chain_pem))
        try:
            self._record(
                certificate_record(
                    CERT_ISSUE,
                    thing,
                    issued.serial_hex,
                    issued.serial_hex,
                    notAfter=stamp(issued.not_after),
                    issuer="azure-enrollment-group-ca",
                )
            )
        except LedgerUnavailable:
            self.issuer.revoke(issued.serial_hex)  # never sent: no unrecorded certificate lives
            raise
        self.inventory.update(
            twin,
            state=RotationState.ISSUED.value,
            placedCohort=cohort,
            placedOffset=offset,
            pending={
                "serial": issued.serial_hex,
                "notAfter": stamp(issued.not_after),
                "certificatePem": chain,
            },
        )
        return _issued_message(chain)

    def _send(self, thing: str, message: dict[str, Any]) -> None:
        try:
            answer = self.methods.invoke(thing, INSTALL_CERTIFICATE, message, response_timeout=30)
        except DirectMethodError as error:
            # Not fatal: the certificate is stored (ISSUED) and sent again by the next pass;
            # an attempt that never confirms times out and is retried.
            logger.warning("%s: certificate not delivered: %s", thing, error)
            return
        if answer.status != 200:
            logger.warning("%s: the device answered %s to the certificate", thing, answer.status)

    def _resend(self, twin: Twin, report: PassReport) -> None:
        """An issued certificate not confirmed yet is sent again: a direct method is not
        queued for a device that was offline or restarting (a device that has it already,
        or is no longer waiting for it, ignores it)."""
        tags = certificate_tags(twin)
        pending = tags.get("pending")
        if tags.get("state") != RotationState.ISSUED.value or not isinstance(pending, dict):
            return
        self._send(twin.device_id, _issued_message(str(pending.get("certificatePem"))))
        report.resent.append(twin.device_id)

    # -- confirmation -------------------------------------------------------------------------

    def confirm(self, thing: str) -> bool:
        """If the device reports its new serial, make it the working certificate and revoke
        the old one; True when it did."""
        return self._confirm_twin(self.inventory.get(thing))

    def _confirm_twin(self, twin: Twin) -> bool:
        tags = certificate_tags(twin)
        pending = tags.get("pending")
        reported = twin.reported.get(REPORTED)
        # FAILED too: a confirmation that arrives after the attempt timed out still counts.
        if (
            tags.get("state") not in (RotationState.ISSUED.value, RotationState.FAILED.value)
            or not isinstance(pending, dict)
            or not isinstance(reported, dict)
            or reported.get("serial") != pending.get("serial")
        ):
            return False
        thing = twin.device_id
        old = tags.get("serial")
        not_after = parse_stamp(pending["notAfter"], f"{thing}: pending.notAfter")
        try:
            self._record(
                certificate_record(
                    CERT_ROTATE, thing, pending["serial"], pending["serial"], previousSerial=old
                )
            )
            if isinstance(old, str) and old:
                self._record(certificate_record(CERT_REVOKE, thing, old, old, reason="rotated"))
        except LedgerUnavailable as error:
            # Nothing changed yet: the next pass confirms it again and records it then.
            logger.warning("%s: confirmation not recorded (%s); retried next pass", thing, error)
            return False
        self.inventory.update(
            twin,
            serial=pending["serial"],
            notAfter=pending["notAfter"],
            expiryDay=not_after.date().isoformat(),
            previousSerial=old,
            state=RotationState.IDLE.value,
            attempts=0,
            lastRotationAt=stamp(self.clock()),
            pending=None,
            csrSha256=None,
        )
        if isinstance(old, str) and old:
            self.issuer.revoke(old)
        return True

    # -- helpers ------------------------------------------------------------------------------

    def _record(self, data: dict[str, Any]) -> None:
        if self.ledger is not None:
            self.ledger.append(data)

    def place(self, thing: str) -> tuple[str, int]:
        """The stagger cohort (today, UTC) and offset of a certificate issued now for ``thing``.

        Recorded with the issuance (``placedCohort``/``placedOffset``) and never recomputed."""
        cohort = cohort_of(self.clock())
        return cohort, assign_offset(self.policy, self._ledger(cohort), cohort, thing)

    def _ledger(self, cohort: str) -> MemoryLedger:
        if cohort not in self._ledgers:
            self._ledgers = {cohort: seeded_ledger(self.policy, self.inventory, cohort)}
        return self._ledgers[cohort]

    def _twin_or_none(self, thing: str) -> Twin | None:
        try:
            return self.inventory.get(thing)
        except HubServiceError as error:
            if error.status == 404:
                return None
            raise

    def _fail(self, thing: str, reason: str) -> None:
        try:
            twin = self.inventory.get(thing)
            if certificate_tags(twin).get("state") != RotationState.IDLE.value:
                self.inventory.update(
                    twin, state=RotationState.FAILED.value, lastError=reason[:200]
                )
        except HubServiceError as error:
            logger.warning("%s: failure not recorded (%s); the attempt times out", thing, error)


def _issued_message(chain_pem: str) -> dict[str, Any]:
    return {"status": "issued", "certificatePem": chain_pem}
