"""Certificate rotation end to end through the Lambda code, against moto.

Real parts: moto's IoT, IoT data plane, DynamoDB, ACM Private CA and SQS; the
device's key and CSR are made with ``cryptography``, and its certificate is
checked with it. What moto lacks, named where it is used:

- moto's ``IssueCertificate`` ignores ``ApiPassthrough``, ``Validity`` and
  ``IdempotencyToken`` (its docstring says so): the tests record the request the
  signer sends (a botocore event hook, not a stub) and assert on it, and check
  the subject override on the request, not on moto's certificate.
- Faults are injected by ``FaultInjector``, a wrapper that makes named
  operations of a real moto client raise a given error a given number of times.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from iot_remote_access.core.aws_schema import PASSTHROUGH_TEMPLATE_ARN
from iot_remote_access.core.rotation_plan import RotationSettings, RotationState
from iot_remote_access.core.stagger import StaggerPolicy, peak_bound
from iot_remote_access.core.topics import TopicModel
from iot_remote_access.lambdas.certs.config import RotationConfig
from iot_remote_access.lambdas.certs.inventory import LEDGER_PREFIX, Inventory
from iot_remote_access.lambdas.certs.issuance import RetryableError
from iot_remote_access.lambdas.certs.runtime import Runtime, build
from iot_remote_access.lambdas.certs.sweep import work_items

REGION = "eu-west-1"
TABLE = "inventory"
POLICY = "DevicePolicy"
T0 = datetime(2026, 3, 1, 9, 20, tzinfo=UTC)


def create_inventory_table(session: boto3.Session, name: str = TABLE) -> Any:
    """The table as CertificateRotation's construct defines it (keys and indexes)."""

    def index(name: str, key: str, projection: str = "ALL") -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": key, "KeyType": "HASH"},
                {"AttributeName": "thing", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": projection},
        }

    return session.resource("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": "S"}
            for a in ("thing", "expiryDay", "slotHour", "revokeDay")
        ],
        GlobalSecondaryIndexes=[
            index("byExpiryDay", "expiryDay"),
            index("bySlot", "slotHour", "KEYS_ONLY"),
            index("byRevokeDay", "revokeDay"),
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def create_active_ca(session: boto3.Session) -> str:
    """A root CA made ACTIVE the real way: sign its own CSR, import the certificate."""
    pca = session.client("acm-pca")
    ca_arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "fleet-ca"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=ca_arn)["Csr"]
    root_arn = pca.issue_certificate(
        CertificateAuthorityArn=ca_arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHECDSA",
        TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1",
        Validity={"Value": 10, "Type": "YEARS"},
    )["CertificateArn"]
    root = pca.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=root_arn)
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=ca_arn, Certificate=root["Certificate"].encode()
    )
    return str(ca_arn)


class FaultInjector:
    """Wraps a real (moto) client; the named operations raise the given errors first."""

    def __init__(self, client: Any, **faults: list[Exception]) -> None:
        self._client = client
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        pending = self._faults.get(name)
        if not pending:
            return attribute

        def failing(*args: Any, **kwargs: Any) -> Any:
            if pending:
                raise pending.pop(0)
            return attribute(*args, **kwargs)

        return failing


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


@dataclass
class Device:
    """A simulated device: its key stays here, only CSRs and confirmations leave."""

    thing: str
    certificate_id: str
    key: Any = None

    def csr(self, common_name: str | None = None, key: Any = None) -> str:
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name or self.thing)]
        request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
        return (
            request.sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )

    def csr_event(self, csr: str, topic_thing: str | None = None) -> dict[str, Any]:
        return {
            "topic": f"rot/{topic_thing or self.thing}/csr",
            "csr": csr,
            "principal": self.certificate_id,
        }

    def confirm_event(self, principal: str | None = None) -> dict[str, Any]:
        return {"topic": f"rot/{self.thing}/confirm", "principal": principal or self.certificate_id}


@dataclass
class Fleet:
    session: boto3.Session
    runtime: Runtime
    ca_arn: str
    issue_requests: list[dict[str, Any]]

    @property
    def iot(self) -> Any:
        return self.session.client("iot")

    @property
    def inventory(self) -> Inventory:
        return self.runtime.inventory

    def add_device(self, thing: str, expires_in_days: float) -> Device:
        iot = self.iot
        iot.create_thing(thingName=thing)
        cert = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
        iot.attach_policy(policyName=POLICY, target=cert["certificateArn"])
        self.inventory.enroll(
            thing,
            certificate_id=cert["certificateId"],
            not_after=T0 + timedelta(days=expires_in_days),
            now=T0,
        )
        return Device(thing, cert["certificateId"])

    def published(self, topic: str) -> list[dict[str, Any]]:
        backend = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION]
        return [json.loads(p) for t, p in backend.published_payloads if t == topic]

    def state(self, thing: str) -> dict[str, Any]:
        item = self.inventory.get(thing)
        assert item is not None
        return item

    def status(self, certificate_id: str) -> str:
        try:
            return str(
                self.iot.describe_certificate(certificateId=certificate_id)[
                    "certificateDescription"
                ]["status"]
            )
        except ClientError:
            return "DELETED"

    def request_rotation(self, device: Device, now: datetime = T0) -> None:
        """The daily plan and the hourly dispatch, as the schedules would run them."""
        assert self.runtime.sweep.plan(now).status == 200
        slot = self.state(device.thing)["slotHour"]
        hour = datetime.strptime(slot, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        assert self.runtime.sweep.dispatch(hour + timedelta(minutes=1)).status == 200
        assert self.state(device.thing)["rotationState"] == RotationState.REQUESTED


def make_config(ca_arn: str, **plan: int) -> RotationConfig:
    return RotationConfig(
        table_name=TABLE,
        ca_arn=ca_arn,
        policy_name=POLICY,
        topics=TopicModel(),
        stagger=StaggerPolicy(),
        plan=RotationSettings(**plan),
    )


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        create_inventory_table(session)
        ca_arn = create_active_ca(session)
        session.client("iot").create_policy(
            policyName=POLICY, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )
        runtime = build(make_config(ca_arn), session)
        requests: list[dict[str, Any]] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            requests.append(dict(params))

        runtime.rotation.clients.pca.meta.events.register(
            "provide-client-params.acm-pca.IssueCertificate", record
        )
        yield Fleet(session, runtime, ca_arn, requests)


def test_a_device_rotates_end_to_end(fleet: Fleet) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    old_id = device.certificate_id
    fleet.request_rotation(device)
    (command,) = fleet.published("cmd/sensor-1/commands")
    assert command["type"] == "rotate-certificate" and command["csrTopic"] == "rot/sensor-1/csr"

    outcome = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    assert outcome.status == 200, outcome.body
    (reply,) = fleet.published("rot/sensor-1/certificate")
    certificate = x509.load_pem_x509_certificate(reply["certificatePem"].encode())
    assert certificate.public_key() == device.key.public_key()  # signed the device's own key
    (request,) = [
        r for r in fleet.issue_requests if r.get("TemplateArn") == PASSTHROUGH_TEMPLATE_ARN
    ]
    assert request["ApiPassthrough"] == {"Subject": {"CommonName": "sensor-1"}}
    assert 365 <= request["Validity"]["Value"] < 365 + 90 and request["Validity"]["Type"] == "DAYS"
    new_id = reply["certificateId"]
    assert fleet.status(new_id) == "ACTIVE" and fleet.status(old_id) == "ACTIVE"
    new_arn = fleet.iot.describe_certificate(certificateId=new_id)["certificateDescription"][
        "certificateArn"
    ]
    assert new_arn in fleet.iot.list_thing_principals(thingName="sensor-1")["principals"]
    assert POLICY in [
        p["policyName"] for p in fleet.iot.list_attached_policies(target=new_arn)["policies"]
    ]

    # Confirming from the old certificate is refused: the device must reconnect first.
    assert fleet.runtime.rotation.confirm(device.confirm_event(), T0).status == 409
    assert fleet.status(old_id) == "ACTIVE"
    device.certificate_id = new_id  # reconnects with the new certificate
    confirmed = fleet.runtime.rotation.confirm(device.confirm_event(), T0 + timedelta(minutes=5))
    assert confirmed.status == 200 and confirmed.metrics == {"RotationSucceeded": 1}
    assert fleet.status(old_id) == "INACTIVE"
    item = fleet.state("sensor-1")
    assert item["certificateId"] == new_id and item["rotationState"] == RotationState.IDLE
    assert item["notAfter"] == certificate.not_valid_after_utc.isoformat()
    assert item["expiryDay"] == certificate.not_valid_after_utc.date().isoformat()
    assert int(item["attempts"]) == 0 and item["previousCertificateId"] == old_id

    # After the grace period the daily plan deletes the old certificate and revokes nothing
    # it did not issue (the factory certificate came from IoT, not from the private CA).
    fleet.runtime.sweep.plan(T0 + timedelta(days=8))
    assert fleet.status(old_id) == "DELETED" and fleet.status(new_id) == "ACTIVE"
    assert "previousCertificateId" not in fleet.state("sensor-1")


def test_stagger_ledger_in_dynamodb_spreads_a_same_day_batch(fleet: Fleet) -> None:
    devices = [fleet.add_device(f"batch-{i:03d}", expires_in_days=40) for i in range(40)]
    fleet.runtime.sweep.plan(T0)
    fleet.runtime.sweep.dispatch(T0 + timedelta(hours=1))
    for device in devices:
        assert fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0).status == 200
    days = [r["Validity"]["Value"] for r in fleet.issue_requests if "ApiPassthrough" in r]
    counts = {d: days.count(d) for d in set(days)}
    assert len(days) == 40 and max(counts.values()) <= peak_bound(40, 90) == 2
    ledger = fleet.inventory.get(LEDGER_PREFIX + "2026-03-01")
    assert ledger is not None and int(ledger["joined"]) == 40


@pytest.mark.parametrize(
    ("make_event", "status", "reason"),
    [
        (lambda d: d.csr_event("not a csr"), 400, "csr: no PEM 'CERTIFICATE REQUEST' blocks"),
        (
            lambda d: d.csr_event(
                d.csr(key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
            ),
            400,
            r"csr: RSA key of 1024 bits; allowed: RSA 2048\.\.4096 bits or EC P-256/P-384",
        ),
        (
            lambda d: d.csr_event(d.csr(key=ec.generate_private_key(ec.SECP521R1()))),
            400,
            "csr: EC key on curve",
        ),
        (
            lambda d: d.csr_event(d.csr(common_name="sensor-2")),
            403,
            "csr: names 'sensor-2' but was sent by 'sensor-1'; allowed: the sender's own",
        ),
        (
            lambda d: d.csr_event(d.csr(common_name="sensor-2"), topic_thing="sensor-2"),
            403,
            "principal: the CSR was not sent with this thing's certificate",
        ),
        (lambda d: {"topic": "rot/+/csr", "csr": d.csr()}, 400, r"topic: 'rot/\+/csr' is not a"),
    ],
)
def test_bad_csrs_are_rejected_and_nothing_changes(
    fleet: Fleet, make_event: Any, status: int, reason: str
) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.add_device("sensor-2", expires_in_days=400)
    fleet.request_rotation(device)
    outcome = fleet.runtime.rotation.sign(make_event(device), T0)
    assert outcome.status == status
    assert re.match(reason, outcome.body["reason"])
    assert json.loads(outcome.response()["body"])["status"] == "rejected"
    assert fleet.state("sensor-1")["rotationState"] == RotationState.REQUESTED
    assert len(fleet.iot.list_certificates()["certificates"]) == 2  # no certificate was made
    assert fleet.status(device.certificate_id) == "ACTIVE"


def test_csr_from_a_thing_with_no_rotation_pending_is_rejected(fleet: Fleet) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=300)
    outcome = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    assert (
        outcome.status == 409 and "has no rotation pending (state IDLE)" in outcome.body["reason"]
    )
    (reply,) = fleet.published("rot/sensor-1/certificate")
    assert reply["status"] == "rejected"
    assert fleet.issue_requests == []


def test_unknown_thing_is_rejected(fleet: Fleet) -> None:
    device = Device("ghost", "0" * 64)
    outcome = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    assert outcome.status == 404 and "not in the certificate inventory" in outcome.body["reason"]


def test_a_duplicate_csr_gets_the_same_certificate_not_a_second_one(fleet: Fleet) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    csr = device.csr()
    first = fleet.runtime.rotation.sign(device.csr_event(csr), T0)
    second = fleet.runtime.rotation.sign(device.csr_event(csr), T0 + timedelta(seconds=3))
    assert first.status == 200 and second.status == 200 and second.body["status"] == "duplicate"
    assert second.body["certificateId"] == first.body["certificateId"]
    replies = fleet.published("rot/sensor-1/certificate")
    assert [r["certificateId"] for r in replies] == [first.body["certificateId"]] * 2
    assert len(fleet.iot.list_certificates()["certificates"]) == 2  # old + one new
    other = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)  # a different CSR now
    assert other.status == 409


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "LimitExceededException", "InternalFailure"]
)
def test_ca_throttling_or_failure_rolls_back_and_a_retry_succeeds(fleet: Fleet, code: str) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    clients = fleet.runtime.rotation.clients
    clients.pca = FaultInjector(
        clients.pca, issue_certificate=[client_error(code, "IssueCertificate")]
    )
    csr = device.csr()
    with pytest.raises(
        RetryableError, match=f"sensor-1: certificate authority failed \\({code}\\)"
    ):
        fleet.runtime.rotation.sign(device.csr_event(csr), T0)
    assert fleet.state("sensor-1")["rotationState"] == RotationState.REQUESTED
    assert len(fleet.iot.list_certificates()["certificates"]) == 1
    retry = fleet.runtime.rotation.sign(device.csr_event(csr), T0)  # Lambda's async retry
    assert retry.status == 200
    # The retry reused the stagger place of the first try: the cohort counted one issuance.
    ledger = fleet.inventory.get(LEDGER_PREFIX + "2026-03-01")
    assert ledger is not None and int(ledger["joined"]) == 1


def test_ca_refusing_the_csr_is_a_rejection_not_a_retry(fleet: Fleet) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    clients = fleet.runtime.rotation.clients
    clients.pca = FaultInjector(
        clients.pca, issue_certificate=[client_error("MalformedCSRException", "IssueCertificate")]
    )
    outcome = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    assert outcome.status == 400
    assert (
        outcome.body["reason"]
        == "csr: the certificate authority refused it (MalformedCSRException)"
    )
    assert fleet.state("sensor-1")["rotationState"] == RotationState.REQUESTED


@pytest.mark.parametrize("failing", ["attach_thing_principal", "attach_policy"])
def test_iot_failure_mid_way_removes_the_half_registered_certificate(
    fleet: Fleet, failing: str
) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    clients = fleet.runtime.rotation.clients
    real_iot = clients.iot
    clients.iot = FaultInjector(
        real_iot, **{failing: [client_error("ServiceUnavailableException", failing)]}
    )
    csr = device.csr()
    with pytest.raises(RetryableError, match="attaching the certificate failed"):
        fleet.runtime.rotation.sign(device.csr_event(csr), T0)
    certificates = fleet.iot.list_certificates()["certificates"]
    assert [c["certificateId"] for c in certificates] == [device.certificate_id]
    assert fleet.state("sensor-1")["rotationState"] == RotationState.REQUESTED
    assert "pendingCertificateId" not in fleet.state("sensor-1")
    assert fleet.runtime.rotation.sign(device.csr_event(csr), T0).status == 200


def test_failed_cleanup_is_finished_by_the_planner_timeout(fleet: Fleet) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    clients = fleet.runtime.rotation.clients
    real_iot = clients.iot
    clients.iot = FaultInjector(
        real_iot,
        attach_policy=[client_error("ServiceUnavailableException", "AttachPolicy")],
        detach_policy=[client_error("ServiceUnavailableException", "DetachPolicy")],
    )
    with pytest.raises(RetryableError):
        fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    stuck = fleet.state("sensor-1")
    assert stuck["rotationState"] == RotationState.ISSUING and stuck["pendingCertificateId"]
    assert fleet.status(device.certificate_id) == "ACTIVE"
    clients.iot = real_iot
    fleet.runtime.sweep.plan(T0 + timedelta(hours=25))  # past the attempt timeout
    assert fleet.status(stuck["pendingCertificateId"]) == "DELETED"
    after = fleet.state("sensor-1")
    assert after["rotationState"] == RotationState.SCHEDULED and "pendingCertificateId" not in after


def test_a_device_that_never_confirms_keeps_its_old_certificate_and_is_retried_then_alarmed(
    fleet: Fleet,
) -> None:
    runtime = fleet.runtime
    runtime.sweep.config = runtime.rotation.config = replace(
        runtime.rotation.config, plan=RotationSettings(max_attempts=2, backoff_hours=1)
    )
    device = fleet.add_device("sensor-1", expires_in_days=32)
    now = T0
    metrics: dict[str, int] = {}
    for attempt in (1, 2, 3):
        fleet.request_rotation(device, now)
        assert int(fleet.state("sensor-1")["attempts"]) == attempt
        signed = runtime.rotation.sign(device.csr_event(device.csr()), now)
        assert signed.status == 200
        pending = signed.body["certificateId"]
        now += timedelta(hours=26)  # no confirmation within the 24 h attempt timeout
        metrics = runtime.sweep.plan(now).metrics
        assert fleet.status(pending) == "DELETED"  # the unconfirmed certificate is removed
        assert fleet.status(device.certificate_id) == "ACTIVE"  # the old one never stopped working
        assert fleet.state("sensor-1")["rotationState"] == RotationState.SCHEDULED
    assert metrics["RotationsTimedOut"] == 1 and metrics["RotationsExhausted"] == 1
    assert metrics["CriticalWithoutRotation"] == 1  # now inside 30 days of expiry


def test_planner_fans_out_through_sqs_and_the_worker_does_the_items(fleet: Fleet) -> None:
    sqs = fleet.session.client("sqs")
    queue_url = sqs.create_queue(QueueName="work")["QueueUrl"]
    runtime = build(
        replace(make_config(fleet.ca_arn), queue_url=queue_url, inline_limit=5), fleet.session
    )
    for i in range(60):
        fleet.add_device(f"fan-{i:02d}", expires_in_days=50)
    outcome = runtime.sweep.plan(T0)
    assert outcome.body["queued"] == 60 and outcome.body["done"] == 0
    assert runtime.sweep.sqs_calls == 1  # 60 items -> 3 messages -> one SendMessageBatch
    bodies = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        bodies += [m["Body"] for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    assert len(bodies) == 3
    runtime.sweep.apply_all(work_items(bodies), T0)
    assert {fleet.state(f"fan-{i:02d}")["rotationState"] for i in range(60)} == {
        RotationState.SCHEDULED
    }


def test_the_daily_sweep_reads_only_the_due_window(fleet: Fleet) -> None:
    for i in range(30):
        fleet.add_device(f"far-{i}", expires_in_days=200 + i)
    fleet.add_device("due", expires_in_days=10)
    fleet.inventory.calls.clear()
    outcome = fleet.runtime.sweep.plan(T0)
    assert outcome.metrics["ExpiringWithin30Days"] == 1 and outcome.metrics["RotationsPending"] == 1
    assert "Scan" not in fleet.inventory.calls
    # one query per day: 30 days back (expired), today, 90 days ahead; 8 days of retirements
    assert fleet.inventory.calls["Query"] == 30 + 1 + 90 + 8
