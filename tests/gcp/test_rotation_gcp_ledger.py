"""GCP rotation decisions in the access ledger: the chain in the locked anchor bucket.

The real Firestore emulator holds the inventory; the ledger is the real ``ObjectChain``
over the GCS STAND-IN (``tests.support.gcs_standin``: create-only objects, listing by
prefix, the locked retention policy), the same chain `evidence record gcp-sessions`
writes; the check is the real ``core.ledger_verify``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from iot_remote_access.core.ledger import LedgerUnavailable, parse_record
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
from iot_remote_access.lambdas.anchor_sinks.sinks import GcsAnchors
from iot_remote_access.pubsub.anchor_bucket import AnchorBucket, deploy
from iot_remote_access.pubsub.rotation import anchor_access_ledger
from iot_remote_access.pubsub.rotation_settings import GcpRotationSettings, RotationSettingsError
from tests.support.gcp_rotation import Fleet, make_csr
from tests.support.gcs_standin import GcsStandIn
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator

THING = "pump-9"
BUCKET = "fleet-ledger-anchors"


@pytest.fixture
def fleet(firestore_emulator: FirestoreEmulator, tmp_path: Path, ca: TestCa) -> Fleet:
    return Fleet(tmp_path, ca)


@pytest.fixture
def chain() -> Iterator[ObjectChain]:
    with GcsStandIn() as standin:
        client = storage.Client(
            project="fleet-evidence",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": standin.endpoint},
        )
        deploy(client, AnchorBucket(name=BUCKET, location="EU"), project="fleet-evidence")
        yield ObjectChain(GcsAnchors(client.bucket(BUCKET)), sleep=lambda _: None)


class Switchable:
    """The chain, or a store that is down (a GCS outage) while ``down`` is set, or for the
    record kinds in ``down_for``."""

    def __init__(self, chain: ObjectChain) -> None:
        self.chain, self.down, self.down_for = chain, False, set[str]()

    def append(self, data: Mapping[str, Any]) -> object:
        if self.down or data["event"] in self.down_for:
            raise LedgerUnavailable("gcs: 503 backendError")
        return self.chain.append(data)


def csr_message(pem: str) -> bytes:
    return json.dumps({"csr": pem}).encode()


def events(chain: ObjectChain) -> list[tuple[str, str]]:
    return [(r["event"], r["decision"]) for r in (parse_record(x).data for x in chain.lines())]


def test_issue_rotate_and_revoke_are_recorded_and_anchored(
    fleet: Fleet, chain: ObjectChain
) -> None:
    old = fleet.enroll(THING, state=RotationState.REQUESTED)
    protocol = fleet.protocol(ledger=chain)
    assert protocol.on_csr(csr_message(make_csr(THING)), {"thing": THING}).outcome == "issued"
    assert protocol.on_confirm(b"{}", {"thing": THING}).outcome == "confirmed"

    assert events(chain) == [
        ("cert.issue", "issued"),
        ("cert.rotate", "rotated"),
        ("cert.revoke", "revoked"),
    ]
    issue, rotate, revoke = (parse_record(line).data for line in chain.lines())
    current = fleet.inventory.get(THING)
    assert current is not None
    assert issue["certificateId"] == rotate["certificateId"] == current["certificateId"]
    assert issue["serial"] == current["serial"] and issue["cloud"] == "gcp"
    assert rotate["previousCertificateId"] == old == revoke["certificateId"]
    assert not any("BEGIN" in str(v) for r in (issue, rotate, revoke) for v in r.values())
    # The planner's CronJobs anchor the chain after each run.
    assert anchor_access_ledger(chain) is None
    anchors = [json.loads(body) for body in _anchor_bodies(chain)]
    assert [a["seq"] for a in anchors] == [2]
    result = verify(chain.lines(), [])
    assert result.holds and result.records == 3


def _anchor_bodies(chain: ObjectChain) -> list[bytes]:
    from iot_remote_access.lambdas.anchor_sinks.sinks import anchor_bodies

    return list(anchor_bodies(chain.sink, chain.ledger_id))


def test_an_unrecordable_issue_sends_nothing_and_the_retry_records_the_same_certificate(
    fleet: Fleet, chain: ObjectChain
) -> None:
    fleet.enroll(THING, state=RotationState.REQUESTED)
    ledger = Switchable(chain)
    ledger.down = True
    protocol = fleet.protocol(ledger=ledger)
    message = csr_message(make_csr(THING))
    decision = protocol.on_csr(message, {"thing": THING})
    assert (decision.outcome, decision.status) == ("ledger-unavailable", 503)
    assert decision.retry_after is not None  # left for a redelivery
    assert fleet.replies.sent == []
    item = fleet.inventory.get(THING)
    assert item is not None and item["rotationState"] == "REQUESTED"

    ledger.down = False  # the redelivery: the same request id, the same certificate
    assert protocol.on_csr(message, {"thing": THING}).outcome == "issued"
    ((_, body),) = fleet.replies.sent
    assert len(fleet.issuer.issued()) == 2  # the enrolment's and this one: none doubled
    [issue] = [parse_record(line).data for line in chain.lines()]
    assert issue["certificateId"] == body["certificateId"]


def test_an_unrecordable_confirmation_or_revocation_is_finished_later(
    fleet: Fleet, chain: ObjectChain
) -> None:
    old = fleet.enroll(THING, state=RotationState.REQUESTED)
    ledger = Switchable(chain)
    protocol = fleet.protocol(ledger=ledger)
    assert protocol.on_csr(csr_message(make_csr(THING)), {"thing": THING}).outcome == "issued"

    ledger.down = True
    assert protocol.on_confirm(b"{}", {"thing": THING}).status == 503
    item = fleet.inventory.get(THING)
    assert item is not None and item["rotationState"] == "ISSUED"  # nothing changed

    ledger.down = False
    ledger.down_for = {"cert.revoke"}  # the store fails again after cert.rotate
    assert protocol.on_confirm(b"{}", {"thing": THING}).outcome == "confirmed"
    item = fleet.inventory.get(THING)
    assert item is not None and item["revokePending"] is True  # revoked, not yet recorded
    assert old in fleet.issuer.revoked()

    ledger.down_for = set()  # the planner's retry revokes again and records it
    assert protocol.retire_previous(item) is True
    assert events(chain) == [
        ("cert.issue", "issued"),
        ("cert.rotate", "rotated"),
        ("cert.revoke", "revoked"),
    ]
    item = fleet.inventory.get(THING)
    assert item is not None and "revokePending" not in item


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ROTATION_ACCESS_LEDGER_BUCKET", "Bad_Bucket!", "is not a Cloud Storage bucket name"),
        ("ROTATION_ACCESS_LEDGER_ID", "x" * 300, "ROTATION_ACCESS_LEDGER_ID: 'xxx"),
    ],
)
def test_ledger_variables_are_checked(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("ROTATION_PROJECT", "fleet-evidence")
    monkeypatch.setenv("ROTATION_CA_POOL", "projects/fleet-evidence/locations/eu/caPools/p")
    monkeypatch.setenv(variable, value)
    with pytest.raises(RotationSettingsError, match=message):
        GcpRotationSettings.from_environment()
