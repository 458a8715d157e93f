"""An AWS account in moto holding what `evidence pack` reads, shaped as the constructs
create it: the AccessLedger's table and Object Lock bucket (records and hourly anchors of
a scenario), the CertificateRotation inventory table, IoT things with certificates and
attributes, the device policy, an operators' IAM policy with its deny statements, and
the security detector's log group with Powertools-shaped finding records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from iot_remote_access.core.evidence_model import z
from iot_remote_access.lambdas.ledger.anchors import put_anchor
from tests.support.evidence_scenario import Scenario
from tests.support.ledger_aws import BUCKET, REGION, TABLE

INVENTORY = "inventory-table"
FINDINGS_GROUP = "/aws/lambda/security-detector"
OPERATOR_POLICY = "Fleet-OperatorPolicy"


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Account:
    dynamodb: Any
    s3: Any
    iot: Any


def populate(s: Scenario, *, ledger_id: str = "access") -> Account:
    """Inside ``ledger_aws()`` (moto): write the scenario to every store."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    for record in s.records:
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "ledger": {"S": ledger_id},
                "seq": {"N": str(record.seq)},
                "record": {"S": record.line().decode()},
            },
        )
    for anchor in s.anchors:
        put_anchor(s3, BUCKET, ledger_id, anchor)
    _inventory(s)
    iot = _iot(s)
    _operator_policy()
    _findings(s)
    return Account(dynamodb, s3, iot)


def _inventory(s: Scenario) -> None:
    resource = boto3.resource("dynamodb", region_name=REGION)
    table = resource.create_table(
        TableName=INVENTORY,
        KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for asset in s.assets:
        current = asset.current()
        assert current is not None and current.not_after is not None
        item = {
            "thing": asset.thing,
            "certificateId": current.id,
            "serial": current.serial,
            "notAfter": current.not_after.isoformat(timespec="seconds"),
            "expiryDay": current.not_after.date().isoformat(),
            "status": "ACTIVE",
            "rotationState": "IDLE",
            "attempts": 0,
        }
        if asset.enrolled_at is not None:
            item["enrolledAt"] = asset.enrolled_at.isoformat(timespec="seconds")
        if asset.last_rotation_at is not None:
            item["lastRotationAt"] = asset.last_rotation_at.isoformat(timespec="seconds")
        table.put_item(Item=item)
    table.put_item(Item={"thing": "#stagger#2026-11-01", "joined": 3})  # never an asset


def _iot(s: Scenario) -> Any:
    iot = boto3.client("iot", region_name=REGION)
    for asset in s.assets:
        iot.create_thing(
            thingName=asset.thing, attributePayload={"attributes": dict(asset.owner_labels)}
        )
    iot.create_thing(thingName="gateway-1", attributePayload={"attributes": {"owner": "it"}})
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName="gateway-1", principal=certificate["certificateArn"])
    iot.create_policy(
        policyName="Fleet-DevicePolicy",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": "arn:aws:iot:eu-west-1:123456789012:client/${iot:Connection.Thing.ThingName}",
                    }
                ],
            }
        ),
    )
    iot.create_policy(
        policyName="legacy-wide-open",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
            }
        ),
    )
    return iot


def _operator_policy() -> None:
    boto3.client("iam", region_name=REGION).create_policy(
        PolicyName=OPERATOR_POLICY,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "ListTunnels",
                        "Effect": "Allow",
                        "Action": "iot:ListTunnels",
                        "Resource": "*",
                    },
                    {
                        "Sid": "NoTunnelsAroundTheBroker",
                        "Effect": "Deny",
                        "Action": ["iot:OpenTunnel", "iot:RotateTunnelAccessToken"],
                        "Resource": "*",
                    },
                ],
            }
        ),
    )


def _findings(s: Scenario) -> None:
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=FINDINGS_GROUP)
    logs.create_log_stream(logGroupName=FINDINGS_GROUP, logStreamName="s")
    events = []
    for finding in sorted(s.findings, key=lambda f: f.observed_at):
        detail = {
            "schemaVersion": "1",
            "detection": finding.detection,
            "severity": finding.severity,
            "thingName": finding.thing,
            "observedAt": finding.observed_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "summary": finding.summary,
        }
        message = {"level": "INFO", "message": "security finding", "finding": detail}
        events.append(
            {
                "timestamp": int((finding.observed_at + timedelta(seconds=1)).timestamp() * 1000),
                "message": json.dumps(message),
            }
        )
        events.append(
            {
                "timestamp": int((finding.observed_at + timedelta(seconds=2)).timestamp() * 1000),
                "message": json.dumps({"level": "INFO", "message": "other"}),
            }
        )
    logs.put_log_events(logGroupName=FINDINGS_GROUP, logStreamName="s", logEvents=events)


def pack_arguments(s: Scenario, out: str) -> list[str]:
    last_day = (s.end - timedelta(days=1)).date().isoformat()
    return [
        "evidence",
        "pack",
        "--from",
        s.start.date().isoformat(),
        "--to",
        last_day,
        "--out",
        out,
        "--ledger-table",
        TABLE,
        "--anchor-bucket",
        BUCKET,
        "--inventory-table",
        INVENTORY,
        "--findings-log-group",
        FINDINGS_GROUP,
        "--region",
        REGION,
    ]


__all__ = ["Account", "pack_arguments", "populate", "today", "z"]
