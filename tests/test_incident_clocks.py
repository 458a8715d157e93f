"""NIS2 incident clocks: opened by a high-severity finding, recorded by the CLI, alarmed
when overdue (moto: DynamoDB, SNS, SQS), and recomputed from the ledger alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from iot_remote_access.core import incident_clock as clocks
from iot_remote_access.core.incident_clock import Clock, Incident
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.lambdas.incident_check.handler import check
from iot_remote_access.lambdas.incident_open.handler import open_incident
from iot_remote_access.lambdas.incidents.store import IncidentStore
from iot_remote_access.lambdas.ledger.store import LedgerStore, LedgerWriter
from tests.support.cli_runner import run_cli
from tests.support.ledger_aws import REGION, TABLE, ledger_aws

DETECTED = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def test_the_deadlines_follow_nis2_article_23() -> None:
    incident = Incident("inc-1", DETECTED, "unexpected-subscription", "s-1", "x")
    early, notification, final = incident.clocks()
    assert early.due == DETECTED + timedelta(hours=24)
    assert notification.due == DETECTED + timedelta(hours=72)
    assert final.due is None and final.state(DETECTED + timedelta(days=90)) == "waiting"
    later = DETECTED + timedelta(hours=25)
    assert [c.kind for c in incident.overdue(later)] == ["early-warning"]
    notified = DETECTED + timedelta(hours=80)
    sent = Incident("inc-1", DETECTED, "d", None, "x", sent={"notification": notified})
    assert sent.clocks()[1].state(notified) == "sent late"
    assert sent.clocks()[2].due == notified + timedelta(days=30)
    quiet = Incident("inc-1", DETECTED, "d", None, "x", significant=False)
    assert quiet.overdue(DETECTED + timedelta(days=60)) == [] and quiet.closed()
    assert Clock("final", None).state(DETECTED) == "waiting"


@pytest.mark.parametrize(
    "text", ["inc-", "inc-01", "INC-1", "inc-1 ", "x" * 200, "inc-99999999999999999"]
)
def test_incident_ids_are_strict(text: str) -> None:
    with pytest.raises(
        clocks.IncidentError, match=r"--id: .* is not allowed; allowed: inc-<number>"
    ):
        clocks.parse_incident_id(text)


def _finding(severity: str = "high", observed: str = "2026-11-02T06:00:00.000Z") -> dict[str, Any]:
    return {
        "source": "iot-remote-access.security",
        "detail-type": "IoT Security Finding",
        "detail": {
            "schemaVersion": "1",
            "detection": "unexpected-subscription",
            "severity": severity,
            "thingName": "sensor-3",
            "observedAt": observed,
            "summary": "sensor-3 subscribed to cmd/+/commands",
        },
    }


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LedgerWriter, IncidentStore]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with ledger_aws() as aws:
        writer = LedgerWriter(aws.dynamodb, TABLE)
        yield writer, IncidentStore(aws.dynamodb, TABLE, "access")


def test_a_high_finding_opens_one_incident_and_others_none(
    ledger: tuple[LedgerWriter, IncidentStore],
) -> None:
    writer, store = ledger
    now = DETECTED + timedelta(seconds=3)
    opened = open_incident(_finding(), writer, store, now=now)
    assert opened["incident"] == "inc-0"
    assert opened["notificationDue"] == "2026-11-05T06:00:00.000000Z"
    again = open_incident(_finding(), writer, store, now=now)  # delivered twice
    assert again == {"incident": "inc-0", "duplicate": True}
    assert open_incident(_finding("medium"), writer, store, now=now) == {"incident": None}
    bad = open_incident(_finding(observed="yesterday"), writer, store, now=now)
    assert bad["incident"] is None and "detail.observedAt" in bad["error"]
    head = writer.head()
    assert head is not None and head.seq == 0 and head.data["event"] == "incident.open"
    assert [i.id for i in store.incidents()] == ["inc-0"]


def _cli(*args: str) -> Any:
    return run_cli("evidence", "incident", *args, "--ledger-table", TABLE, "--region", REGION)


def test_the_cli_records_ack_and_reports_and_refuses_what_does_not_fit(
    ledger: tuple[LedgerWriter, IncidentStore],
) -> None:
    writer, store = ledger
    open_incident(_finding(), writer, store, now=DETECTED)
    ack = _cli("ack", "--id", "inc-0", "--by", "on-call", "--at", "2026-11-02T07:00:00Z")
    assert (ack.code, ack.stdout.strip()) == (
        0,
        "inc-0: acknowledged at 2026-11-02T07:00:00.000000Z by on-call",
    )
    refusals = {
        ("ack", "--id", "inc-0", "--by", "x"): "--id: inc-0 was already acknowledged at",
        (
            "ack",
            "--id",
            "inc-7",
            "--by",
            "x",
        ): "--id: 'inc-7' is not an incident of ledger 'access'",
        ("ack", "--id", "7", "--by", "x"): "--id: '7' is not allowed; allowed: inc-<number>",
        (
            "report",
            "--id",
            "inc-0",
            "--kind",
            "final",
        ): "--kind final: the notification of inc-0 is not recorded yet",
        (
            "report",
            "--id",
            "inc-0",
            "--kind",
            "early-warning",
            "--at",
            "2999-01-01T00:00:00Z",
        ): "--at: '2999-01-01T00:00:00Z' is in the future",
        (
            "report",
            "--id",
            "inc-0",
            "--kind",
            "early-warning",
            "--at",
            "noon",
        ): "--at: 'noon' is not a time",
    }
    for args, message in refusals.items():
        result = _cli(*args)
        assert result.code == 2 and message in result.stderr, (args, result.stderr)
    sent = _cli(
        "report",
        "--id",
        "inc-0",
        "--kind",
        "early-warning",
        "--at",
        "2026-11-02T20:00:00Z",
        "--reference",
        "CSIRT-1",
    )
    assert sent.code == 0, sent.stderr
    twice = _cli("report", "--id", "inc-0", "--kind", "early-warning")
    assert twice.code == 2 and "the early-warning of inc-0 is already recorded" in twice.stderr
    incident = store.get("inc-0")
    assert incident is not None and incident.acknowledged_by == "on-call"
    assert incident.sent == {"early-warning": datetime(2026, 11, 2, 20, tzinfo=UTC)}
    events = [json.loads(line)["data"] for line in LedgerStore(writer.client, TABLE).lines()]
    assert [e["event"] for e in events] == ["incident.open", "incident.ack", "incident.report"]
    assert events[2] == {
        "event": "incident.report",
        "incident": "inc-0",
        "kind": "early-warning",
        "reference": "CSIRT-1",
        "at": "2026-11-02T20:00:00.000000Z",
    }


def test_an_overdue_clock_alarms_once_on_the_alarm_topic(
    ledger: tuple[LedgerWriter, IncidentStore],
) -> None:
    writer, store = ledger
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName="on-call")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    open_incident(_finding(), writer, store, now=DETECTED)
    assert (
        _cli(
            "report", "--id", "inc-0", "--kind", "early-warning", "--at", "2026-11-02T20:00:00Z"
        ).code
        == 0
    )
    in_time = check(writer, store, sns, topic, now=DETECTED + timedelta(hours=71))
    assert in_time == {"alarms": []}
    late = DETECTED + timedelta(hours=73)
    assert check(writer, store, sns, topic, now=late) == {"alarms": ["inc-0:notification"]}
    assert check(writer, store, sns, topic, now=late + timedelta(hours=1)) == {"alarms": []}
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["incident"] == "inc-0" and body["clock"] == "notification"
    assert body["due"] == "2026-11-05T06:00:00.000000Z"
    # Every step is a ledger record, and the chain holds.
    lines = list(LedgerStore(writer.client, TABLE).lines())
    assert json.loads(lines[-1])["data"]["event"] == "incident.overdue"
    assert verify(iter(lines), []).holds


def test_the_pack_shows_an_incident_as_the_opener_and_the_cli_recorded_it(
    ledger: tuple[LedgerWriter, IncidentStore], tmp_path: Any
) -> None:
    """The parts joined: the opener's record, the CLI's ack and report, hourly anchors, and
    `evidence pack` reading them back from the same table and bucket."""
    from iot_remote_access.core.ledger import anchor_of
    from iot_remote_access.lambdas.ledger.anchors import put_anchor
    from tests.support.ledger_aws import BUCKET

    writer, store = ledger
    now = datetime.now(UTC)
    start = (now - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    detected = start + timedelta(minutes=9)
    writer.clock = lambda: detected + timedelta(seconds=2)
    observed = detected.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert open_incident(_finding(observed=observed), writer, store, now=detected)["incident"]
    for args in (
        (
            "ack",
            "--id",
            "inc-0",
            "--by",
            "on-call",
            "--at",
            (start + timedelta(minutes=20)).isoformat(),
        ),
        (
            "report",
            "--id",
            "inc-0",
            "--kind",
            "early-warning",
            "--at",
            (start + timedelta(minutes=30)).isoformat(),
        ),
    ):
        assert _cli(*args).code == 0
    s3 = boto3.client("s3", region_name=REGION)
    moment = start + timedelta(hours=1)
    while moment <= now:
        head = writer.head()
        assert head is not None
        put_anchor(s3, BUCKET, "access", anchor_of(head, moment))
        moment += timedelta(hours=1)
    head = writer.head()
    assert head is not None
    put_anchor(s3, BUCKET, "access", anchor_of(head, now))
    out = tmp_path / "pack"
    result = run_cli(
        "evidence",
        "pack",
        "--from",
        start.isoformat(),
        "--to",
        (now + timedelta(minutes=1)).isoformat(),
        "--out",
        str(out),
        "--ledger-table",
        TABLE,
        "--anchor-bucket",
        BUCKET,
        "--region",
        REGION,
        "--no-cloud-sessions",
    )
    assert result.code == 0, result.stderr
    incidents = json.loads((out / "incidents.json").read_text())
    assert len(incidents) == 1
    row = incidents[0]
    assert (row["incident"], row["acknowledgedBy"], row["thing"]) == (
        "inc-0",
        "on-call",
        "sensor-3",
    )
    assert row["detectedAt"] == detected.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert row["earlyWarningSent"] == (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (row["earlyWarningState"], row["notificationState"], row["overdue"]) == (
        "sent",
        "running",
        "",
    )


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        {"detail": "high"},
        {"detail": {"severity": "high"}},
        {"detail": {"severity": "high", "observedAt": 1.5}},
        {"detail": {"severity": "high", "observedAt": "9" * 10_000}},
        {"detail": {"severity": ["high"], "observedAt": "2026-11-02T06:00:00Z"}},
    ],
)
def test_a_malformed_event_opens_nothing_and_does_not_fail(
    ledger: tuple[LedgerWriter, IncidentStore], event: Any
) -> None:
    writer, store = ledger
    assert open_incident(event, writer, store, now=DETECTED)["incident"] is None
    assert writer.head() is None


def test_a_hostile_finding_still_opens_a_bounded_incident(
    ledger: tuple[LedgerWriter, IncidentStore],
) -> None:
    writer, store = ledger
    event = _finding()
    event["detail"].update(thingName="t" * 50_000, summary="\ud800" + "s" * 50_000, detection=7)
    opened = open_incident(event, writer, store, now=DETECTED)
    head = writer.head()
    assert opened["incident"] == "inc-0" and head is not None
    assert len(head.data["thing"]) == 128 and len(head.data["summary"]) == 300
    assert head.data["detection"] == ""
