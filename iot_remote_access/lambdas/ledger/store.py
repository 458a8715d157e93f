"""The chain in DynamoDB: one item per record, appended with a conditional write.

Item: ``ledger`` (partition key, the ledger id), ``seq`` (sort key, a number),
``record`` (the record's exact canonical line) and ``expiresAt`` (TTL, epoch seconds).
Two writers that read the same head both try to put ``seq = head + 1``; the condition
``attribute_not_exists(seq)`` lets exactly one succeed, and the other re-reads the new
head and re-links. So the chain cannot fork, whatever the number of writers.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from iot_remote_access.core.ledger import (
    DEFAULT_LEDGER_ID,
    DEFAULT_RETENTION_DAYS,
    LedgerError,
    Record,
    next_record,
    parse_record,
)
from iot_remote_access.core.ledger import (
    LedgerUnavailable as LedgerUnavailable,  # re-exported: its home before core
)

TABLE_VARIABLE = "LEDGER_TABLE"
ID_VARIABLE = "LEDGER_ID"
RETENTION_VARIABLE = "LEDGER_RETENTION_DAYS"
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
#: Writers answer a caller (the broker within its 30 s): a DynamoDB that does not answer
#: must fail the append within seconds (about 11 s per call at worst), not hang until the
#: function times out.
WRITER_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=3
)
#: Lost races before giving up: each costs one Query and one PutItem (a few ms).
MAX_ATTEMPTS = 8


def dynamodb_client() -> Any:
    """The writers' client (short timeouts, ``WRITER_CONFIG``)."""
    return boto3.client("dynamodb", config=WRITER_CONFIG)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


class LedgerStore:
    """Reads of one ledger's records (the head, or all of them in order)."""

    def __init__(self, client: Any, table_name: str, ledger_id: str = DEFAULT_LEDGER_ID) -> None:
        self.client = client
        self.table_name = table_name
        self.ledger_id = ledger_id

    def head(self) -> Record | None:
        """The last record, read consistently; None for an empty ledger."""
        page = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="#l = :l",
            ExpressionAttributeNames={"#l": "ledger"},
            ExpressionAttributeValues={":l": {"S": self.ledger_id}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = page.get("Items", [])
        return _record(items[0]) if items else None

    def lines(self, from_seq: int = 0) -> Iterator[bytes]:
        """Every record's exact line from ``from_seq`` on, in order, page by page."""
        start: dict[str, Any] | None = None
        while True:
            page = self.client.query(
                TableName=self.table_name,
                KeyConditionExpression="#l = :l AND #s >= :s",
                ExpressionAttributeNames={"#l": "ledger", "#s": "seq"},
                ExpressionAttributeValues={
                    ":l": {"S": self.ledger_id},
                    ":s": {"N": str(from_seq)},
                },
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for item in page.get("Items", []):
                yield item["record"]["S"].encode("utf-8")
            start = page.get("LastEvaluatedKey")
            if not start:
                return


def _record(item: Mapping[str, Any]) -> Record:
    try:
        return parse_record(item["record"]["S"].encode("utf-8"))
    except (KeyError, LedgerError) as error:
        seq = item.get("seq", {}).get("N", "?")
        raise LedgerUnavailable(
            f"the ledger's head (record {seq}) is not a record: {error}"
        ) from None


class LedgerWriter(LedgerStore):
    """Appends decisions to the chain. One per container; safe with any number of writers."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        ledger_id: str = DEFAULT_LEDGER_ID,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(client, table_name, ledger_id)
        self.retention = timedelta(days=retention_days)
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def from_environment(cls, client: Any = None) -> LedgerWriter:
        """Built from what ``AccessLedger.writer_environment()`` puts in a function's env."""
        try:
            table = os.environ[TABLE_VARIABLE]
        except KeyError:
            raise LedgerUnavailable(f"{TABLE_VARIABLE} is not set") from None
        retention = os.environ.get(RETENTION_VARIABLE, str(DEFAULT_RETENTION_DAYS))
        if not retention.isdigit():
            raise LedgerUnavailable(f"{RETENTION_VARIABLE}: {retention[:20]!r} is not a number")
        return cls(
            client or dynamodb_client(),
            table,
            os.environ.get(ID_VARIABLE, DEFAULT_LEDGER_ID),
            retention_days=int(retention),
        )

    def append(self, data: Mapping[str, Any]) -> Record:
        """Record one decision; returns its record. Raises LedgerError for a value the ledger
        refuses (a caller's bug) and LedgerUnavailable when it could not be stored."""
        for attempt in range(MAX_ATTEMPTS):
            moment = self.clock()
            record = next_record(self._current_head(), data, moment)
            try:
                self._put(record, moment)
            except BotoCoreError as error:
                raise LedgerUnavailable(
                    f"could not store record {record.seq}: {type(error).__name__}"
                ) from None
            except ClientError as error:
                if _code(error) != "ConditionalCheckFailedException":
                    raise LedgerUnavailable(
                        f"could not store record {record.seq}: {_code(error)}"
                    ) from None
                # Another writer took this sequence number: back off a little, re-link.
                self.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter, not crypto
                continue
            return record
        raise LedgerUnavailable(f"lost {MAX_ATTEMPTS} races for the ledger's next record")

    def _current_head(self) -> Record | None:
        try:
            return self.head()
        except ClientError as error:
            raise LedgerUnavailable(f"could not read the ledger's head: {_code(error)}") from None
        except BotoCoreError as error:
            raise LedgerUnavailable(
                f"could not read the ledger's head: {type(error).__name__}"
            ) from None

    def _put(self, record: Record, moment: datetime) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "ledger": {"S": self.ledger_id},
                "seq": {"N": str(record.seq)},
                "record": {"S": record.line().decode("utf-8")},
                "expiresAt": {"N": str(int((moment + self.retention).timestamp()))},
            },
            ConditionExpression="attribute_not_exists(seq)",
        )
