"""The deciding functions write the access ledger: tunnel broker, tunnel sweeper, certificates.

Real parts: moto's DynamoDB (the ledger table as AccessLedger creates it), S3 with
Object Lock (the anchors), IoT, ACM Private CA and the IoT data plane; the anchor
Lambda; `evidence export` and `evidence verify` through the console entry point.
Stand-in: the STUBBED Secure Tunneling API (moto has none; tests/support/tunneling_stub).
A ledger that is down is the real writer pointed at a table that does not exist
(DynamoDB answers ResourceNotFoundException), or ``FlakyDynamoDB`` (named: it makes the
first N PutItem calls fail with a real ClientError, then passes through to moto).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from iot_remote_access.core.ledger import parse_record
from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.core.tunnel_rules import TunnelPolicy, format_time
from iot_remote_access.lambdas.certs.issuance import RetryableError
from iot_remote_access.lambdas.certs.runtime import build
from iot_remote_access.lambdas.ledger.recording import Recorder
from iot_remote_access.lambdas.ledger.store import LedgerWriter
from iot_remote_access.lambdas.ledger_anchor import handler as anchor_handler
from iot_remote_access.lambdas.tunnel_broker import handler as broker
from iot_remote_access.lambdas.tunnel_sweeper import handler as sweeper
from tests.support.cli_runner import run_cli
from tests.support.ledger_aws import BUCKET, REGION, TABLE, LedgerAws, ledger_aws
from tests.support.tunneling_stub import (
    OPERATOR_ARN,
    LambdaContext,
    StubbedSecureTunneling,
    captured_powertools_log,
    described,
    json_event,
    log_records,
    summary,
    url_event,
)
from tests.test_cert_rotation_moto import (
    POLICY,
    T0,
    Fleet,
    create_active_ca,
    create_inventory_table,
    make_config,
)

THING = "sensor-1"


class FlakyDynamoDB:
    """NAMED STAND-IN for an outage: the first ``failures`` PutItem calls raise a real
    ClientError (as DynamoDB does when throttled past retries); then moto answers."""

    def __init__(self, client: Any, failures: int) -> None:
        self._client = client
        self.failures = failures

    def query(self, **kwargs: Any) -> Any:
        return self._client.query(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
                "PutItem",
            )
        return self._client.put_item(**kwargs)


def _recorder(client: Any, table: str = TABLE) -> Recorder:
    return Recorder(LedgerWriter(client, table, "access", sleep=lambda _: None))


def _records(aws: LedgerAws) -> list[dict[str, Any]]:
    lines = list(LedgerWriter(aws.dynamodb, TABLE).lines())
    return [dict(parse_record(line).data) for line in lines]


def _export_and_verify(aws: LedgerAws, out: Path) -> str:
    """Anchor the head, export as an auditor would, and verify; returns verify's line."""
    anchor_handler.anchor(LedgerWriter(aws.dynamodb, TABLE), aws.s3, BUCKET, now=datetime.now(UTC))
    exported = run_cli(
        "evidence", "export", "--table", TABLE, "--bucket", BUCKET, "--out", str(out),
        "--region", REGION,
    )  # fmt: skip
    assert exported.code == 0, exported.stderr
    verified = run_cli(
        "evidence", "verify", str(out / "chain.jsonl"), "--anchors", str(out / "anchors.jsonl")
    )
    assert verified.code == 0, verified.stderr
    return verified.stdout


# -- tunnel broker ---------------------------------------------------------------------------


@dataclass
class BrokerRig:
    aws: LedgerAws
    tunneling: StubbedSecureTunneling
    log: Any
    monkeypatch: pytest.MonkeyPatch

    def call(self, payload: Any) -> tuple[int, dict[str, Any]]:
        result = broker.handler(json_event(payload), LambdaContext())
        return result["statusCode"], json.loads(result["body"])

    def lines(self) -> list[dict[str, Any]]:
        return [r for r in log_records(self.log) if "audit" in r]

    def ledger(self, recorder: Recorder) -> None:
        self.monkeypatch.setattr(broker, "_recorder", recorder)


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[BrokerRig]:
    with ledger_aws() as aws:
        iot = boto3.client("iot", region_name=REGION)
        iot.create_thing(thingName=THING)
        tunneling = StubbedSecureTunneling()
        monkeypatch.setattr(broker, "_clients", broker.Clients(iot=iot, tunneling=tunneling.client))
        monkeypatch.setattr(broker, "_recorder", _recorder(aws.dynamodb))
        monkeypatch.delenv(broker.POLICY_VARIABLE, raising=False)
        with captured_powertools_log(broker.logger) as log:
            yield BrokerRig(aws, tunneling, log, monkeypatch)


def _request(**fields: Any) -> dict[str, Any]:
    return {"thing": THING, "service": "SSH", "minutes": 30, "reason": "INC-7 logs", **fields}


def test_broker_records_each_decision_before_answering_and_the_export_verifies(
    rig: BrokerRig, tmp_path: Path
) -> None:
    rig.tunneling.expect_list([], thing=THING)
    tunnel_id = rig.tunneling.expect_open(thing=THING, minutes=30)
    rig.tunneling.expect_list([summary(tunnel_id)], thing=THING)
    status, body = rig.call(_request())
    assert status == 201, body
    status, _ = rig.call(_request(thing="ghost-9"))
    assert status == 404

    opened, refusal = _records(rig.aws)
    allowed_line, refused_line = rig.lines()
    # The ledger holds exactly the audit record the log line carries, and the line says so.
    assert opened == allowed_line["audit"] and refusal == refused_line["audit"]
    assert allowed_line["ledger"] == {"recorded": True, "seq": 0}
    assert refused_line["ledger"] == {"recorded": True, "seq": 1}
    assert (opened["event"], opened["decision"], opened["tunnelId"]) == (
        "tunnel.open",
        "allowed",
        tunnel_id,
    )
    assert opened["requester"] == OPERATOR_ARN and opened["minutes"] == 30
    assert (refusal["decision"], refusal["status"], refusal["thing"]) == ("refused", 404, "ghost-9")
    # The token is the caller's only: never in a record.
    assert body["sourceAccessToken"] not in json.dumps([opened, refusal])
    assert "holds: 2 record(s), seq 0..1" in _export_and_verify(rig.aws, tmp_path / "x")


def test_broker_fails_closed_when_the_opening_cannot_be_recorded(rig: BrokerRig) -> None:
    rig.ledger(_recorder(rig.aws.dynamodb, table="no-such-table"))
    rig.tunneling.expect_list([], thing=THING)
    tunnel_id = rig.tunneling.expect_open(thing=THING, minutes=30)
    rig.tunneling.expect_list([summary(tunnel_id)], thing=THING)
    rig.tunneling.expect_close(tunnel_id)  # opened, not handed out: closed again at once

    status, body = rig.call(_request())

    assert status == 503
    assert body == {
        "field": "ledger",
        "message": "ledger: the decision could not be recorded; no tunnel was handed out, "
        "try again",
    }
    rig.tunneling.stubber.assert_no_pending_responses()
    (line,) = rig.lines()
    assert (line["audit"]["decision"], line["audit"]["status"]) == ("refused", 503)
    # The tunnel opened and closed again is named: CloudTrail's OpenTunnel has a counterpart.
    assert (line["audit"]["tunnelId"], line["audit"]["rolledBack"]) == (tunnel_id, True)
    assert line["ledger"]["recorded"] is False
    assert "ResourceNotFoundException" in line["ledger"]["error"]
    assert rig.tunneling.tokens[0] not in json.dumps(log_records(rig.log))


def test_when_even_the_roll_back_fails_the_token_still_never_leaves(rig: BrokerRig) -> None:
    rig.ledger(_recorder(rig.aws.dynamodb, table="no-such-table"))
    rig.tunneling.expect_list([], thing=THING)
    tunnel_id = rig.tunneling.expect_open(thing=THING, minutes=30)
    rig.tunneling.expect_list([summary(tunnel_id)], thing=THING)
    rig.tunneling.expect_error("close_tunnel", "ThrottlingException")  # left to the sweeper

    status, body = rig.call(_request())

    assert status == 503 and body["field"] == "ledger"
    assert "sourceAccessToken" not in body
    (line,) = [r for r in log_records(rig.log) if "audit" in r]
    assert (line["audit"]["tunnelId"], line["audit"]["rolledBack"]) == (tunnel_id, False)
    records = log_records(rig.log)
    assert any(r["message"].startswith("could not close a tunnel") for r in records)
    assert rig.tunneling.tokens[0] not in json.dumps(records)


def test_a_tunnel_rolled_back_after_a_race_is_named_in_the_refusal_record(rig: BrokerRig) -> None:
    rig.tunneling.expect_list([], thing=THING)
    tunnel_id = rig.tunneling.expect_open(thing=THING, minutes=30)
    now = datetime.now(UTC)
    rig.tunneling.expect_list(
        [summary(tunnel_id, created=now), summary("a-winner", created=now - timedelta(seconds=1))],
        thing=THING,
    )
    rig.tunneling.expect_close(tunnel_id)
    status, _ = rig.call(_request())
    assert status == 409
    (record,) = _records(rig.aws)
    assert (record["decision"], record["status"], record["tunnelId"], record["rolledBack"]) == (
        "refused",
        409,
        tunnel_id,
        True,
    )


def test_a_refusal_stands_when_the_ledger_is_down_and_its_line_says_so(rig: BrokerRig) -> None:
    rig.ledger(_recorder(FlakyDynamoDB(rig.aws.dynamodb, failures=99)))
    status, _ = rig.call(_request(thing="ghost-9"))
    assert status == 404
    (line,) = rig.lines()
    assert line["ledger"] == {
        "recorded": False,
        "error": "could not store record 0: ProvisionedThroughputExceededException",
    }
    rig.tunneling.stubber.assert_no_pending_responses()  # nothing was opened
    assert _records(rig.aws) == []


def test_hostile_values_of_a_refused_request_are_recorded_as_text(
    rig: BrokerRig, tmp_path: Path
) -> None:
    # Values the ledger's canonical JSON refuses: recorded as their shortened text.
    raw = '{"thing": "\\ud800x", "service": "SSH", "minutes": 100000000000000000000, "reason": "r"}'
    result = broker.handler(url_event(raw), LambdaContext())
    assert result["statusCode"] == 400
    (record,) = _records(rig.aws)
    assert record["decision"] == "refused"
    assert record["thing"] == "?x" and record["minutes"] == "100000000000000000000"
    assert "holds: 1 record(s)" in _export_and_verify(rig.aws, tmp_path / "x")


def test_without_a_ledger_the_broker_logs_exactly_as_before(rig: BrokerRig) -> None:
    rig.ledger(Recorder(None))
    status, _ = rig.call(_request(thing="ghost-9"))
    assert status == 404
    (line,) = rig.lines()
    assert "ledger" not in line
    assert _records(rig.aws) == []


def test_recorder_from_environment_is_off_without_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    assert not Recorder.from_environment().enabled
    monkeypatch.setenv("LEDGER_TABLE", TABLE)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    writer = Recorder.from_environment().writer
    assert writer is not None and writer.table_name == TABLE


# -- tunnel sweeper --------------------------------------------------------------------------


@pytest.fixture
def swept(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LedgerAws, StubbedSecureTunneling]]:
    with ledger_aws() as aws:
        stub = StubbedSecureTunneling()
        monkeypatch.setattr(sweeper, "_tunneling", stub.client)
        monkeypatch.delenv(sweeper.POLICY_VARIABLE, raising=False)
        yield aws, stub


def _expired(stub: StubbedSecureTunneling, tunnel_id: str, now: datetime) -> None:
    stub.expect_describe(
        described(
            tunnel_id,
            created=now - timedelta(minutes=31),
            minutes=30,
            source="CONNECTED",
            expires_at=format_time(now - timedelta(minutes=1)),
        )
    )
    stub.expect_close(tunnel_id)


def test_sweeper_records_each_close_and_the_export_verifies(
    swept: tuple[LedgerAws, StubbedSecureTunneling], tmp_path: Path
) -> None:
    aws, stub = swept
    now = datetime.now(UTC)
    stub.expect_list([summary("t-1"), summary("t-2")])
    _expired(stub, "t-1", now)
    _expired(stub, "t-2", now)
    with captured_powertools_log(sweeper.logger) as log:
        result = sweeper.sweep(stub.client, TunnelPolicy(), now=now, ledger=_recorder(aws.dynamodb))
    assert result["closed"] == ["t-1", "t-2"]
    records = _records(aws)
    assert [(r["event"], r["closedBy"], r["tunnelId"]) for r in records] == [
        ("tunnel.close", "sweeper", "t-1"),
        ("tunnel.close", "sweeper", "t-2"),
    ]
    lines = [r for r in log_records(log) if "audit" in r]
    assert [line["ledger"] for line in lines] == [
        {"recorded": True, "seq": 0},
        {"recorded": True, "seq": 1},
    ]
    assert "holds: 2 record(s)" in _export_and_verify(aws, tmp_path / "x")


def test_a_close_the_ledger_missed_is_recorded_again_at_the_end_of_the_run(
    swept: tuple[LedgerAws, StubbedSecureTunneling],
) -> None:
    aws, stub = swept
    now = datetime.now(UTC)
    stub.expect_list([summary("t-1"), summary("t-2")])
    _expired(stub, "t-1", now)
    _expired(stub, "t-2", now)
    # t-1's append fails (PutItem refused); t-2 is not tried while the ledger looks down;
    # both are appended at the end of the run, in order.
    with captured_powertools_log(sweeper.logger) as log:
        result = sweeper.sweep(
            stub.client,
            TunnelPolicy(),
            now=now,
            ledger=_recorder(FlakyDynamoDB(aws.dynamodb, failures=1)),
        )
    assert result["closed"] == ["t-1", "t-2"]
    assert [r["tunnelId"] for r in _records(aws)] == ["t-1", "t-2"]
    notes = [
        (r["audit"]["tunnelId"], r["ledger"]["recorded"]) for r in log_records(log) if "audit" in r
    ]
    assert notes == [("t-1", False), ("t-2", False), ("t-1", True), ("t-2", True)]


def test_closing_never_waits_for_the_ledger_and_a_lost_record_fails_the_run(
    swept: tuple[LedgerAws, StubbedSecureTunneling],
) -> None:
    aws, stub = swept
    now = datetime.now(UTC)
    stub.expect_list([summary("t-1"), summary("t-2"), summary("t-3")])
    for tunnel_id in ("t-1", "t-2", "t-3"):
        _expired(stub, tunnel_id, now)
    flaky = FlakyDynamoDB(aws.dynamodb, failures=99)
    with (
        captured_powertools_log(sweeper.logger) as log,
        pytest.raises(sweeper.SweepFailed, match=r"t-1 \(closed, not recorded in the ledger\)"),
    ):
        sweeper.sweep(stub.client, TunnelPolicy(), now=now, ledger=_recorder(flaky))
    stub.stubber.assert_no_pending_responses()  # every tunnel was closed all the same
    lines = [r for r in log_records(log) if "audit" in r]
    assert [line["ledger"]["recorded"] for line in lines] == [False] * 6
    # Bounded: one failed append during the closes, one at the end; the rest not tried.
    assert 99 - flaky.failures == 2
    assert "not tried: the ledger failed earlier" in lines[1]["ledger"]["error"]


# -- certificate rotation --------------------------------------------------------------------


@dataclass
class CertRig:
    aws: LedgerAws
    fleet: Fleet
    ledger: FlakyDynamoDB


@pytest.fixture
def certs() -> Iterator[CertRig]:
    with ledger_aws() as aws:
        session = boto3.Session(region_name=REGION)
        create_inventory_table(session)
        ca_arn = create_active_ca(session)
        session.client("iot").create_policy(
            policyName=POLICY, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )
        ledger = FlakyDynamoDB(aws.dynamodb, failures=0)
        runtime = build(make_config(ca_arn), session, ledger=_recorder(ledger))
        yield CertRig(aws, Fleet(session, runtime, ca_arn, []), ledger)


def test_a_rotation_records_issue_rotate_and_revoke_and_the_export_verifies(
    certs: CertRig, tmp_path: Path
) -> None:
    fleet = certs.fleet
    device = fleet.add_device("sensor-1", expires_in_days=40)
    old_id = device.certificate_id
    fleet.request_rotation(device)
    signed = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    assert signed.status == 200, signed.body
    new_id = signed.body["certificateId"]
    device.certificate_id = new_id
    assert fleet.runtime.rotation.confirm(device.confirm_event(), T0).status == 200
    fleet.runtime.sweep.plan(T0 + timedelta(days=8))  # past the grace period: retired
    assert fleet.status(old_id) == "DELETED"

    issue, rotate, revoke = _records(certs.aws)
    assert issue["event"] == "cert.issue" and issue["certificateId"] == new_id
    assert issue["thing"] == "sensor-1" and issue["serial"] and issue["validityDays"] >= 365
    assert (rotate["event"], rotate["certificateId"], rotate["previousCertificateId"]) == (
        "cert.rotate",
        new_id,
        old_id,
    )
    assert (revoke["event"], revoke["decision"], revoke["certificateId"]) == (
        "cert.revoke",
        "revoked",
        old_id,
    )
    assert "PRIVATE KEY" not in json.dumps([issue, rotate, revoke])
    assert "CERTIFICATE" not in json.dumps([issue, rotate, revoke])  # ids, not PEMs
    assert "holds: 3 record(s)" in _export_and_verify(certs.aws, tmp_path / "x")


def test_an_issue_that_cannot_be_recorded_is_removed_and_retried(certs: CertRig) -> None:
    fleet = certs.fleet
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    csr = device.csr()
    certs.ledger.failures = 1
    with pytest.raises(RetryableError, match="the issue could not be recorded"):
        fleet.runtime.rotation.sign(device.csr_event(csr), T0)
    # Never handed out: the new certificate is gone and nothing was sent to the device.
    certificates = fleet.iot.list_certificates()["certificates"]
    assert [c["certificateId"] for c in certificates] == [device.certificate_id]
    assert fleet.state("sensor-1")["rotationState"] == RotationState.REQUESTED
    assert fleet.published("rot/sensor-1/certificate") == []
    assert _records(certs.aws) == []
    # The retry (Lambda's, or the device's redelivered CSR) issues and records it.
    assert fleet.runtime.rotation.sign(device.csr_event(csr), T0).status == 200
    assert [r["event"] for r in _records(certs.aws)] == ["cert.issue"]


def test_a_confirmation_that_cannot_be_recorded_is_retried_not_lost(certs: CertRig) -> None:
    fleet = certs.fleet
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    signed = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    device.certificate_id = signed.body["certificateId"]
    certs.ledger.failures = 1
    with pytest.raises(RetryableError, match=r"cert\.rotate could not be recorded"):
        fleet.runtime.rotation.confirm(device.confirm_event(), T0)
    assert fleet.state("sensor-1")["rotationState"] == RotationState.ISSUED  # not marked done
    assert fleet.runtime.rotation.confirm(device.confirm_event(), T0).status == 200
    assert [r["event"] for r in _records(certs.aws)] == ["cert.issue", "cert.rotate"]


def test_a_timed_out_attempt_records_the_removed_pending_certificate(certs: CertRig) -> None:
    fleet = certs.fleet
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    signed = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    pending = signed.body["certificateId"]
    certs.ledger.failures = 1  # the first try cannot record: the item fails and is retried
    with pytest.raises(RetryableError, match=r"cert\.revoke could not be recorded"):
        fleet.runtime.rotation.fail_attempt("sensor-1", "attempt timed out")
    assert fleet.runtime.rotation.fail_attempt("sensor-1", "attempt timed out")
    assert fleet.status(pending) == "DELETED"
    removed = _records(certs.aws)[-1]
    assert (removed["event"], removed["decision"], removed["certificateId"]) == (
        "cert.revoke",
        "removed",
        pending,
    )
    assert removed["reason"] == "attempt timed out"


def test_certificate_handlers_record_through_the_environment_the_construct_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Joined as deployed: the handlers build their runtime (and the ledger writer) from the
    environment AccessLedger.connect sets, and each log line says what the ledger holds."""
    from iot_remote_access.lambdas.cert_confirm import handler as confirm_handler
    from iot_remote_access.lambdas.cert_signer import handler as signer_handler
    from iot_remote_access.lambdas.certs import runtime as runtime_module
    from tests.test_cert_handlers import LambdaContextStandIn
    from tests.test_cert_rotation_moto import Device

    with ledger_aws() as aws:
        session = boto3.Session(region_name=REGION)
        create_inventory_table(session, "inv")
        ca_arn = create_active_ca(session)
        iot = session.client("iot")
        iot.create_policy(
            policyName=POLICY, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )
        for key, value in {
            "INVENTORY_TABLE": "inv",
            "CA_ARN": ca_arn,
            "DEVICE_POLICY_NAME": POLICY,
            "LEDGER_TABLE": TABLE,
            "LEDGER_ID": "access",
            "LEDGER_RETENTION_DAYS": "400",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            monkeypatch.setenv(key, value)
        for module in (signer_handler, confirm_handler):
            monkeypatch.setattr(module.metrics.provider, "namespace", "IotRemoteAccess")
        runtime_module.runtime.cache_clear()
        try:
            runtime = runtime_module.runtime()
            assert runtime.rotation.ledger.enabled
            iot.create_thing(thingName="sensor-1")
            cert = iot.create_keys_and_certificate(setAsActive=True)
            iot.attach_thing_principal(thingName="sensor-1", principal=cert["certificateArn"])
            now = datetime.now(UTC)
            runtime.inventory.enroll(
                "sensor-1",
                certificate_id=cert["certificateId"],
                not_after=now + timedelta(days=20),
                now=now,
            )
            device = Device("sensor-1", cert["certificateId"])
            runtime.sweep.plan(now)
            slot = runtime.inventory.get("sensor-1")["slotHour"]  # type: ignore[index]
            runtime.sweep.dispatch(datetime.strptime(slot, "%Y-%m-%dT%H").replace(tzinfo=UTC))
            context = LambdaContextStandIn()
            with captured_powertools_log(signer_handler.logger) as signer_log:
                signed = signer_handler.handler(device.csr_event(device.csr()), context)
            assert signed["statusCode"] == 200, signed
            device.certificate_id = json.loads(signed["body"])["certificateId"]
            with captured_powertools_log(confirm_handler.logger) as confirm_log:
                confirmed = confirm_handler.handler(device.confirm_event(), context)
            assert confirmed["statusCode"] == 200, confirmed
        finally:
            runtime_module.runtime.cache_clear()
        lines = [r for r in log_records(signer_log) + log_records(confirm_log) if "audit" in r]
        assert [(line["message"], line["ledger"]) for line in lines] == [
            ("csr handled", {"recorded": True, "seq": 0}),
            ("confirmation handled", {"recorded": True, "seq": 1}),
        ]
        assert [r["event"] for r in _records(aws)] == ["cert.issue", "cert.rotate"]
