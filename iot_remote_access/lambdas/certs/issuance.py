"""The device side of a rotation: sign a CSR, take a confirmation, remove old certificates.

Invariants, whatever fails and wherever:

- the old certificate stays ACTIVE until the device has confirmed *from the new
  certificate* (the IoT rule passes ``principal()``, the certificate the device is
  connected with): no device is ever locked out;
- a certificate is either registered *and* attached to the thing and the policy,
  or cleaned up (detached, INACTIVE, deleted); if even the cleanup fails its id
  stays in the inventory and the planner's timeout path cleans it later;
- one CSR gives at most one certificate: the inventory moves REQUESTED -> ISSUING
  with a conditional write and remembers the CSR's hash, and the CA gets an
  idempotency token from that hash;
- the subject is never taken from the CSR: the API-passthrough template sets the
  common name to the thing name;
- with an access ledger configured, each issue, rotation and revocation is one ledger
  record, appended *before* the step is marked done in the inventory: a record that
  cannot be stored fails the step (an issued certificate is removed again and never
  sent), so Lambda/SQS retries it; a retried step may append its record twice
  (at least once, never lost), each naming the same certificate id.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from iot_remote_access.core.aws_schema import PASSTHROUGH_TEMPLATE_ARN
from iot_remote_access.core.csr import certificate_facts
from iot_remote_access.core.csr_policy import CsrRefusal, Verdict, rotation_verdict, screen_csr
from iot_remote_access.core.ledger_records import CERT_ISSUE, CERT_REVOKE, CERT_ROTATE
from iot_remote_access.core.rotation_messages import issued_body
from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.core.stagger import StaggerError, issuance_placement
from iot_remote_access.core.topics import render_topic, thing_from_topic
from iot_remote_access.lambdas.certs.config import RotationConfig
from iot_remote_access.lambdas.certs.inventory import DynamoLedger, Inventory, StateConflict
from iot_remote_access.lambdas.ledger.recording import Recorder
from iot_remote_access.lambdas.ledger.store import LedgerUnavailable

#: ACM Private CA error codes that mean "this CSR will never be signed" (not worth a retry).
CSR_REFUSED_CODES = frozenset({"MalformedCSRException", "InvalidArgsException"})


class Rejection(Exception):
    """Bad input from a device: answered with a 4xx outcome, never retried."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RetryableError(RuntimeError):
    """An AWS dependency failed; everything was rolled back, so the event can be retried."""


@dataclass
class Outcome:
    """What a handler returns (an HTTP-like status and JSON body) and the metrics to emit."""

    status: int
    body: dict[str, Any]
    metrics: dict[str, int] = field(default_factory=dict)
    #: The device the event was about, when its topic named one (for the audit record).
    thing: str | None = None

    def response(self) -> dict[str, Any]:
        return {"statusCode": self.status, "body": json.dumps(self.body, sort_keys=True)}

    def audit(self, event_name: str, event: object) -> dict[str, Any]:
        """The handler's audit record: who asked, what was decided and why."""
        principal = event.get("principal") if isinstance(event, dict) else None
        return {
            "event": event_name,
            "decision": "refused" if self.status >= 400 else str(self.body.get("status")),
            "status": self.status,
            "thing": self.thing,
            "principal": principal if isinstance(principal, str) else _shown(principal),
            "reason": self.body.get("reason"),
        }


def _shown(value: object, limit: int = 60) -> str:
    """``repr`` of untrusted input, shortened so a huge value cannot flood a reply."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


@dataclass
class Clients:
    """The AWS clients the device-side handlers use (boto3 clients, or moto's)."""

    pca: Any
    iot: Any
    iot_data: Any


class Rotation:
    """Signs CSRs and takes confirmations for one fleet."""

    def __init__(
        self,
        config: RotationConfig,
        inventory: Inventory,
        clients: Clients,
        ledger: Recorder | None = None,
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.clients = clients
        #: The access ledger (a no-op recorder when none is configured).
        self.ledger = ledger or Recorder(None)
        self._signing_algorithm: str | None = None

    # -- helpers -------------------------------------------------------------

    def _thing(self, event: object, template: str) -> str:
        if not isinstance(event, dict):  # a device's payload that is not a JSON object
            raise Rejection(
                400,
                f"event: a {type(event).__name__} is not an object; allowed: the IoT rule's "
                "object with topic, csr and principal",
            )
        topic = event.get("topic")
        thing = thing_from_topic(template, topic) if isinstance(topic, str) else None
        if thing is None:
            raise Rejection(400, f"topic: {str(topic)[:140]!r} is not a {template!r} topic")
        return thing

    def _reply(self, thing: str, body: dict[str, Any]) -> None:
        """Answer on the device's own certificate topic (QoS 1: the device may be reconnecting)."""
        topic = render_topic(self.config.topics.rotation_certificate, thing)
        self.clients.iot_data.publish(topic=topic, qos=1, payload=json.dumps(body).encode())

    def _reject(self, thing: str | None, rejection: Rejection) -> Outcome:
        body = {"status": "rejected", "reason": rejection.reason}
        if thing is not None:
            # The rejection is also the handler's result and is logged there.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._reply(thing, body)
        return Outcome(rejection.status, body, {"RotationRejected": 1})

    def signing_algorithm(self) -> str:
        if self._signing_algorithm is None:
            ca = self.clients.pca.describe_certificate_authority(
                CertificateAuthorityArn=self.config.ca_arn
            )["CertificateAuthority"]
            self._signing_algorithm = str(
                ca["CertificateAuthorityConfiguration"]["SigningAlgorithm"]
            )
        return self._signing_algorithm

    # -- CSR -> certificate ----------------------------------------------------

    def sign(self, event: dict[str, Any], now: datetime) -> Outcome:
        thing: str | None = None
        try:
            thing = self._thing(event, self.config.topics.rotation_csr)
            outcome = self._sign(thing, event, now)
        except CsrRefusal as refusal:  # the shared rules (core/csr_policy.py)
            outcome = self._reject(thing, Rejection(refusal.status, refusal.reason))
        except Rejection as rejection:
            outcome = self._reject(thing, rejection)
        outcome.thing = thing
        return outcome

    def _sign(self, thing: str, event: dict[str, Any], now: datetime) -> Outcome:
        # Without the certificate the CSR came in with, ownership cannot be checked:
        # refuse rather than skip the check (a rule missing principal() is a defect).
        principal = event.get("principal")
        if not isinstance(principal, str) or not principal:
            raise Rejection(
                400,
                f"principal: {_shown(principal)} is missing or not a certificate id; "
                "allowed: the certificate id the IoT rule passes as principal()",
            )
        csr = screen_csr(event.get("csr"), thing)  # the rules every cloud's signer shares
        item = self.inventory.get(thing)
        if item is not None and principal not in (
            item["certificateId"],
            item.get("pendingCertificateId"),
        ):
            raise Rejection(403, "principal: the CSR was not sent with this thing's certificate")
        verdict = rotation_verdict(
            thing,
            csr,
            state=None if item is None else item.get("rotationState"),
            fingerprint_on_record=None if item is None else item.get("csrSha256"),
        )
        assert item is not None  # rotation_verdict refused a thing not in the inventory
        if verdict is Verdict.DUPLICATE:
            self._reply(
                thing, self._issued_body(item)
            )  # a redelivered CSR: same answer, no new certificate
            return Outcome(
                200, {"status": "duplicate", "certificateId": item["pendingCertificateId"]}
            )
        try:
            item = self.inventory.begin_issuing(thing, csr.fingerprint, now)
        except StateConflict:
            raise Rejection(409, "csr: another CSR for this thing is being signed") from None
        return self._issue(thing, item, csr.pem(), csr.fingerprint, now)

    def _issue(
        self, thing: str, item: dict[str, Any], csr_pem: str, fingerprint: str, now: datetime
    ) -> Outcome:
        try:
            # A retry reuses the place recorded for today's cohort: never a second claim.
            placement = issuance_placement(
                self.config.stagger,
                DynamoLedger(self.inventory),
                thing,
                now,
                (item.get("staggerCohort"), item.get("staggerOffset")),
            )
            if placement.fresh:
                self.inventory.remember_stagger(thing, placement.cohort, placement.offset)
            certificate_arn = self.clients.pca.issue_certificate(
                CertificateAuthorityArn=self.config.ca_arn,
                Csr=csr_pem.encode(),
                SigningAlgorithm=self.signing_algorithm(),
                TemplateArn=PASSTHROUGH_TEMPLATE_ARN,
                ApiPassthrough={"Subject": {"CommonName": thing}},
                Validity={"Value": placement.validity_days, "Type": "DAYS"},
                IdempotencyToken=fingerprint[:36],
            )["CertificateArn"]
            self.clients.pca.get_waiter("certificate_issued").wait(
                CertificateAuthorityArn=self.config.ca_arn,
                CertificateArn=certificate_arn,
                WaiterConfig={"Delay": 1, "MaxAttempts": 20},
            )
            issued = self.clients.pca.get_certificate(
                CertificateAuthorityArn=self.config.ca_arn, CertificateArn=certificate_arn
            )
        except (ClientError, BotoCoreError, StaggerError) as error:
            self._roll_back(thing)
            code = _code(error)
            if code in CSR_REFUSED_CODES:
                raise Rejection(
                    400, f"csr: the certificate authority refused it ({code})"
                ) from None
            raise RetryableError(f"{thing}: certificate authority failed ({code})") from None
        pem = str(issued["Certificate"])
        chain = str(issued.get("CertificateChain", ""))
        facts = certificate_facts(pem)
        certificate_id = self._register(thing, pem)
        self._record_issue(
            thing,
            certificate_id,
            {"serial": facts.serial, "validityDays": placement.validity_days},
        )
        item = self.inventory.issued(
            thing,
            certificate_id=certificate_id,
            certificate_pem=pem + ("\n" + chain if chain else ""),
            not_after=facts.not_after,
            serial=facts.serial,
        )
        try:
            self._reply(thing, self._issued_body(item))
        except (ClientError, BotoCoreError) as error:
            # Issued and recorded: the device's redelivered CSR (or this event's retry)
            # gets the same certificate through the duplicate path.
            raise RetryableError(
                f"{thing}: could not publish the certificate ({_code(error)})"
            ) from None
        return Outcome(
            200,
            {
                "status": "issued",
                "certificateId": certificate_id,
                "validityDays": placement.validity_days,
            },
            {"CertificatesIssued": 1},
        )

    def _issued_body(self, item: dict[str, Any]) -> dict[str, Any]:
        return issued_body(self.config.topics, item)

    def _register(self, thing: str, pem: str) -> str:
        iot = self.clients.iot
        try:
            registered = iot.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")
        except (ClientError, BotoCoreError) as error:
            self._roll_back(thing)
            raise RetryableError(
                f"{thing}: IoT did not register the certificate ({_code(error)})"
            ) from None
        certificate_id = str(registered["certificateId"])
        arn = str(registered["certificateArn"])
        try:
            self.inventory.record_registered(thing, certificate_id)
            iot.attach_thing_principal(thingName=thing, principal=arn)
            iot.attach_policy(policyName=self.config.policy_name, target=arn)
        except (ClientError, BotoCoreError, StateConflict) as error:
            if self.remove_certificate(thing, certificate_id, arn):
                self._roll_back(thing)
            # else: the id stays as pendingCertificateId in ISSUING; the planner's
            # timeout path removes it once IoT answers again.
            raise RetryableError(
                f"{thing}: attaching the certificate failed ({_code(error)})"
            ) from None
        return certificate_id

    def _record_issue(self, thing: str, certificate_id: str, facts: dict[str, Any]) -> None:
        """Record the issue before anything is sent: unrecorded, the certificate is removed
        again (as when attaching fails) and the step retried."""
        try:
            self.ledger.append(
                {
                    "event": CERT_ISSUE,
                    "decision": "issued",
                    "thing": thing,
                    "certificateId": certificate_id,
                    **facts,
                }
            )
        except LedgerUnavailable as error:
            try:
                removed = self.remove_certificate(thing, certificate_id)
            except (ClientError, BotoCoreError):  # describing it failed: the planner's timeout
                removed = False  # path removes it (its id stays pendingCertificateId)
            if removed:
                self._roll_back(thing)
            raise RetryableError(f"{thing}: the issue could not be recorded ({error})") from None

    def _roll_back(self, thing: str) -> None:
        with contextlib.suppress(StateConflict):  # a concurrent invocation moved it on
            self.inventory.back_to_requested(thing)

    def remove_certificate(self, thing: str, certificate_id: str, arn: str | None = None) -> bool:
        """Detach, deactivate and delete a certificate; True when it is gone.

        Each step tolerates "already done", so a retry after a partial cleanup succeeds.
        """
        iot = self.clients.iot
        if arn is None:
            try:
                described = iot.describe_certificate(certificateId=certificate_id)
            except ClientError as error:
                if _code(error) == "ResourceNotFoundException":
                    return True  # removed by an earlier try (whose ledger record then failed)
                raise
            arn = described["certificateDescription"]["certificateArn"]
        steps: tuple[tuple[str, dict[str, Any]], ...] = (
            ("detach_policy", {"policyName": self.config.policy_name, "target": arn}),
            ("detach_thing_principal", {"thingName": thing, "principal": arn}),
            ("update_certificate", {"certificateId": certificate_id, "newStatus": "INACTIVE"}),
            ("delete_certificate", {"certificateId": certificate_id, "forceDelete": True}),
        )
        for operation, kwargs in steps:
            try:
                getattr(iot, operation)(**kwargs)
            except ClientError as error:
                if _code(error) != "ResourceNotFoundException":
                    return False
            except BotoCoreError:
                return False
        return True

    # -- confirmation ----------------------------------------------------------

    def confirm(self, event: dict[str, Any], now: datetime) -> Outcome:
        thing: str | None = None
        try:
            thing = self._thing(event, self.config.topics.rotation_confirm)
            outcome = self._confirm(thing, event, now)
        except Rejection as rejection:
            outcome = self._reject(thing, rejection)
        outcome.thing = thing
        return outcome

    def _confirm(self, thing: str, event: dict[str, Any], now: datetime) -> Outcome:
        principal = event.get("principal")
        if not isinstance(principal, str) or not principal:
            raise Rejection(400, "principal: missing; the IoT rule must pass principal()")
        item = self.inventory.get(thing)
        if item is None:
            raise Rejection(404, f"thing: {thing!r} is not in the certificate inventory")
        state = item.get("rotationState")
        if state != RotationState.ISSUED:
            if item.get("certificateId") == principal and item.get("lastRotationAt"):
                return Outcome(200, {"status": "already-confirmed"})
            raise Rejection(409, f"thing: {thing!r} has no certificate awaiting confirmation")
        if principal != item.get("pendingCertificateId"):
            raise Rejection(409, "principal: confirm after reconnecting with the new certificate")
        try:
            # Old certificate off first: if this fails nothing changed and the event is retried.
            self.clients.iot.update_certificate(
                certificateId=item["certificateId"], newStatus="INACTIVE"
            )
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise RetryableError(
                    f"{thing}: could not deactivate the old certificate ({_code(error)})"
                ) from None
        revoke_day = (now + timedelta(days=self.config.plan.grace_days)).astimezone(UTC).date()
        self._record(
            thing,
            {
                "event": CERT_ROTATE,
                "decision": "rotated",
                "certificateId": principal,
                "serial": item.get("pendingSerial"),
                "previousCertificateId": item["certificateId"],
                "revokeOn": revoke_day.isoformat(),
            },
        )
        try:
            self.inventory.confirmed(item, now, revoke_day)
        except StateConflict:
            return Outcome(200, {"status": "already-confirmed"})
        return Outcome(
            200, {"status": "confirmed", "certificateId": principal}, {"RotationSucceeded": 1}
        )

    # -- after the grace period / after a timeout ------------------------------

    def retire_previous(self, item: dict[str, Any]) -> bool:
        """Delete a confirmed rotation's old certificate and revoke it at the CA.

        False when IoT or the CA did not answer; RetryableError when the revocation could
        not be recorded in the access ledger. Either way the work item is retried."""
        thing = item["thing"]
        certificate_id = item.get("previousCertificateId")
        if not certificate_id:
            return True
        if not self.remove_certificate(thing, certificate_id):
            return False
        serial = item.get("previousSerial")
        if serial and self.config.ca_arn:
            try:
                self.clients.pca.revoke_certificate(
                    CertificateAuthorityArn=self.config.ca_arn,
                    CertificateSerial=serial,
                    RevocationReason="SUPERSEDED",
                )
            except ClientError as error:
                # Issued by another CA (a factory certificate) or already revoked: IoT no
                # longer knows the certificate, which is what locks it out of the broker.
                if _code(error) not in (
                    "RequestAlreadyProcessedException",
                    "ResourceNotFoundException",
                    "InvalidRequestException",
                ):
                    return False
        # Raises RetryableError when it cannot be recorded: the item is retried.
        self._record_revoke(
            thing, certificate_id, serial, "revoked", "superseded by a confirmed rotation"
        )
        with contextlib.suppress(StateConflict):
            self.inventory.revoked(thing, certificate_id)
        return True

    def _record(self, thing: str, data: dict[str, Any]) -> None:
        """Append one decision about ``thing``; unrecorded, the step is retried."""
        try:
            self.ledger.append({**data, "thing": thing})
        except LedgerUnavailable as error:
            raise RetryableError(
                f"{thing}: {data['event']} could not be recorded ({error})"
            ) from None

    def _record_revoke(
        self, thing: str, certificate_id: str, serial: object, decision: str, reason: str
    ) -> None:
        data = {
            "event": CERT_REVOKE,
            "decision": decision,
            "certificateId": certificate_id,
            "serial": serial if isinstance(serial, str) else None,
            # "revoked": deleted from IoT and revoked at the CA; "removed": deleted from
            # IoT only (a pending certificate never put in use).
            "reason": reason,
        }
        self._record(thing, data)

    def fail_attempt(self, thing: str, reason: str) -> bool:
        """An in-flight attempt timed out: remove its pending certificate, mark FAILED.

        The old certificate is untouched, so the device keeps connecting with it.
        RetryableError when the removal could not be recorded in the access ledger.
        """
        item = self.inventory.get(thing)
        if item is None or item.get("rotationState") not in (
            RotationState.REQUESTED,
            RotationState.ISSUING,
            RotationState.ISSUED,
        ):
            return True
        pending = item.get("pendingCertificateId")
        if pending and not self.remove_certificate(thing, pending):
            return False
        if pending:  # raises RetryableError when it cannot be recorded: retried
            self._record_revoke(thing, pending, item.get("pendingSerial"), "removed", reason)
        with contextlib.suppress(StateConflict):  # the device confirmed meanwhile
            self.inventory.failed(
                thing, expected=RotationState(item["rotationState"]), reason=reason
            )
        return True
