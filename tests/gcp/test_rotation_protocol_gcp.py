"""The GCP rotation protocol on the real Firestore emulator, with the local test issuer.

Issue, duplicate, confirm and revoke; every refusal the AWS signer makes, recorded;
throttling and a service that stopped mid-issue never issue twice.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iot_remote_access.core.certificate_issuer import IssuedCertificate
from iot_remote_access.core.csr_policy import ALREADY_BEING_SIGNED
from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.pubsub.rotation_inventory import FirestoreLedger
from iot_remote_access.pubsub.rotation_protocol import MAX_CSR_MESSAGE_BYTES
from tests.support.gcp_rotation import Fleet, make_csr
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator

THING = "pump-7"


@pytest.fixture
def fleet(firestore_emulator: FirestoreEmulator, tmp_path: Path, ca: TestCa) -> Fleet:
    return Fleet(tmp_path, ca)


def _csr_message(pem: str) -> bytes:
    return json.dumps({"csr": pem}).encode()


def _audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.audit for r in caplog.records if hasattr(r, "audit")]  # type: ignore[attr-defined]


def test_a_csr_is_issued_once_answered_again_confirmed_and_the_old_certificate_revoked(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    old = fleet.enroll(THING, state=RotationState.REQUESTED)
    protocol = fleet.protocol()
    pem = make_csr(THING)
    decision = protocol.on_csr(_csr_message(pem), {"thing": THING})
    assert (decision.outcome, decision.retry_after) == ("issued", None)
    ((to, body),) = fleet.replies.sent
    assert to == THING and body["status"] == "issued"
    assert body["confirmTopic"] == f"rot/{THING}/confirm"
    item = fleet.inventory.get(THING)
    assert item is not None and item["rotationState"] == "ISSUED"
    assert item["pendingCertificateId"] == body["certificateId"] != old
    # Validity from the stagger policy: 365 days + this cohort's offset (one claim).
    not_after = datetime.fromisoformat(body["notAfter"])
    offset = int(item["staggerOffset"])
    assert abs(not_after - (datetime.now(UTC) + timedelta(days=365 + offset))) < timedelta(hours=1)
    assert sum(FirestoreLedger(fleet.inventory).loads(item["staggerCohort"], 90)) == 1
    # The same CSR again (QoS 1 redelivery): the same certificate, not a second one.
    assert protocol.on_csr(_csr_message(pem), {"thing": THING}).outcome == "duplicate"
    assert fleet.replies.sent[1][1] == body
    assert len(fleet.issuer.issued()) == 2  # the enrolment's and this rotation's
    # Confirmed: the new certificate is current, the old one revoked at the CA.
    assert protocol.on_confirm(b"{}", {"thing": THING}).outcome == "confirmed"
    item = fleet.inventory.get(THING)
    assert item is not None
    assert (item["rotationState"], item["certificateId"]) == ("IDLE", body["certificateId"])
    assert item["lastRevokedCertificateId"] == old and "revokePending" not in item
    assert "pendingCertificateId" not in item and item["attempts"] == 0
    assert fleet.issuer.revoked() == {old}
    assert protocol.on_confirm(b"{}", {"thing": THING}).outcome == "already-confirmed"
    events = [(a["event"], a["decision"]) for a in _audits(caplog)]
    assert events == [
        ("rotation.csr", "issued"),
        ("rotation.confirm", "rotated"),
        ("rotation.revoke", "revoked"),
    ]


@pytest.mark.parametrize(
    ("thing", "state", "data", "status", "reason"),
    [
        ("ghost-1", None, "csr", 404, "thing: 'ghost-1' is not in the certificate inventory"),
        (THING, RotationState.REQUESTED, "other-cn", 403, "csr: names 'valve-2' but was sent by"),
        (THING, RotationState.IDLE, "csr", 409, "thing: 'pump-7' has no rotation pending"),
        (THING, RotationState.REQUESTED, "garbage", 400, "csr message: "),
        (THING, RotationState.REQUESTED, "not-pem", 400, "csr: "),
        (THING, RotationState.REQUESTED, "huge", 413, f"allowed: at most {MAX_CSR_MESSAGE_BYTES}"),
    ],
)
def test_what_the_aws_signer_refuses_is_refused_answered_and_recorded(
    fleet: Fleet,
    caplog: pytest.LogCaptureFixture,
    thing: str,
    state: RotationState | None,
    data: str,
    status: int,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    if state is not None:
        fleet.enroll(thing, state=state)
    payload = {
        "csr": _csr_message(make_csr(thing)),
        "other-cn": _csr_message(make_csr("valve-2")),
        "garbage": b"\xff{not json",
        "not-pem": _csr_message("-----BEGIN NOTHING-----"),
        "huge": b" " * (MAX_CSR_MESSAGE_BYTES + 1),
    }[data]
    decision = fleet.protocol().on_csr(payload, {"thing": thing})
    assert (decision.outcome, decision.status, decision.retry_after) == ("refused", status, None)
    ((to, body),) = fleet.replies.sent
    assert to == thing and body["status"] == "rejected" and reason in body["reason"]
    (audit,) = _audits(caplog)
    assert (audit["decision"], audit["status"]) == ("refused", status)
    assert len(str(audit["reason"])) <= 400
    item = fleet.inventory.get(thing)
    if item is not None:  # a known thing keeps the refusal on its document
        assert item["lastRefusal"]["status"] == status and reason in item["lastRefusal"]["reason"]
        assert item["rotationState"] == state
    assert len(fleet.issuer.issued()) == (0 if state is None else 1)  # nothing new issued


def test_a_message_without_a_valid_thing_attribute_is_refused_without_an_answer(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    protocol = fleet.protocol()
    for attributes in ({}, {"thing": "a/b"}, {"thing": "x" * 500}):
        assert protocol.on_csr(_csr_message(make_csr("a")), attributes).status == 400
    assert fleet.replies.sent == []
    reasons = [str(a["reason"]) for a in _audits(caplog)]
    assert all(r.startswith("attribute 'thing':") and len(r) < 200 for r in reasons)


def test_a_throttling_ca_leaves_nothing_half_done_and_the_retry_issues_once(
    fleet: Fleet,
) -> None:
    fleet.enroll(THING, state=RotationState.REQUESTED)
    protocol = fleet.protocol(retry_seconds=7)
    message = _csr_message(make_csr(THING))
    fleet.issuer.throttle(2)
    for _ in range(2):
        decision = protocol.on_csr(message, {"thing": THING})
        assert (decision.outcome, decision.status, decision.retry_after) == ("throttled", 429, 7)
        item = fleet.inventory.get(THING)
        assert item is not None and item["rotationState"] == "REQUESTED"
        assert fleet.replies.sent == []
    assert protocol.on_csr(message, {"thing": THING}).outcome == "issued"
    item = fleet.inventory.get(THING)
    assert item is not None
    # One stagger claim over the three tries, one certificate.
    assert sum(FirestoreLedger(fleet.inventory).loads(item["staggerCohort"], 90)) == 1
    assert len(fleet.issuer.issued()) == 2


class _CrashAfterIssuing:
    """The issuer answers, then the service 'dies' before recording the certificate."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def issue(self, *args: object) -> IssuedCertificate:
        self.fleet.issuer.issue(*args)  # type: ignore[arg-type]
        raise KeyboardInterrupt("the process stops here")

    def revoke(self, name: str) -> None:
        self.fleet.issuer.revoke(name)


def test_a_service_stopped_mid_issue_is_taken_over_with_the_same_certificate(
    fleet: Fleet,
) -> None:
    fleet.enroll(THING, state=RotationState.REQUESTED)
    message = _csr_message(make_csr(THING))
    crashing = fleet.protocol()
    crashing.issuer = _CrashAfterIssuing(fleet)
    with pytest.raises(KeyboardInterrupt):
        crashing.on_csr(message, {"thing": THING})
    item = fleet.inventory.get(THING)
    assert item is not None and item["rotationState"] == "ISSUING"
    (issued_before,) = [i for i in fleet.issuer.issued() if "enroll" not in i["name"]]
    # Redelivered within the lease: someone may still be issuing it; try again later.
    decision = fleet.protocol(issuing_lease=60).on_csr(message, {"thing": THING})
    assert decision.outcome == "being-issued" and 0 < (decision.retry_after or 0) <= 60
    # After the lease (a restarted replica): taken over, and the issuer's request id
    # gives back the certificate issued before the crash.
    later = datetime.now(UTC) + timedelta(seconds=61)
    decision = fleet.protocol(clock=lambda: later).on_csr(message, {"thing": THING})
    assert decision.outcome == "issued"
    ((_, body),) = fleet.replies.sent
    assert body["certificateId"] == issued_before["name"]
    assert len(fleet.issuer.issued()) == 2  # enrolment + one rotation, never two


def test_a_refused_csr_does_not_answer_busy_to_the_device(fleet: Fleet) -> None:
    """ALREADY_BEING_SIGNED is never sent on GCP: a racing copy waits for redelivery."""
    fleet.enroll(THING, state=RotationState.REQUESTED)
    message = _csr_message(make_csr(THING))
    fleet.inventory.transition(THING, None, {"rotationState": "ISSUING"})
    fleet.protocol().on_csr(message, {"thing": THING})
    assert all(ALREADY_BEING_SIGNED not in json.dumps(b) for _, b in fleet.replies.sent)
