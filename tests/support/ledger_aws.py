"""The ledger's AWS resources in moto, shaped as the AccessLedger construct creates them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws

REGION = "eu-west-1"
TABLE = "ledger-table"
BUCKET = "ledger-anchors"
RETENTION_DAYS = 400


@dataclass
class LedgerAws:
    dynamodb: Any
    s3: Any


@contextmanager
def ledger_aws() -> Iterator[LedgerAws]:
    """A ledger table (ledger/seq keys, TTL) and an Object Lock bucket (compliance mode)."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "ledger", "KeyType": "HASH"},
                {"AttributeName": "seq", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "ledger", "AttributeType": "S"},
                {"AttributeName": "seq", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=TABLE,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"},
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(
            Bucket=BUCKET,
            CreateBucketConfiguration={"LocationConstraint": REGION},
            ObjectLockEnabledForBucket=True,
        )
        s3.put_object_lock_configuration(
            Bucket=BUCKET,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": RETENTION_DAYS}},
            },
        )
        yield LedgerAws(dynamodb, s3)


class RacingClient:
    """A DynamoDB client that lets ``rival`` run just before the next ``put_item``s.

    This is the race two broker containers run: both read the same head, the rival
    stores its record first, and our put must then fail its condition and re-link.
    """

    def __init__(self, client: Any, rival: Any, races: int = 1) -> None:
        self._client = client
        self._rival = rival
        self.races = races
        self.conditional_failures = 0

    def query(self, **kwargs: Any) -> Any:
        return self._client.query(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        if self.races > 0:
            self.races -= 1
            self._rival()
        try:
            return self._client.put_item(**kwargs)
        except self._client.exceptions.ConditionalCheckFailedException:
            self.conditional_failures += 1
            raise
