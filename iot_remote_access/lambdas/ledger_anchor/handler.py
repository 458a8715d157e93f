"""Ledger anchor: checks the records written since the last anchor, then anchors the head.

Runs on a schedule (hourly by default). Reads the last anchor from the Object Lock
bucket, verifies every record after it (links, digests, canonical form), and writes
``{seq, head, time}`` of the current head as a new, locked anchor. A broken tail is
NOT anchored: the run fails (the function's Errors metric raises the alarm) and the
log names the record it broke at. With no new record since the last anchor the run
still writes an anchor: "nothing was added" is evidence too.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.ledger import Anchor, format_time
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.lambdas.ledger.anchors import latest_anchor, put_anchor
from iot_remote_access.lambdas.ledger.store import CLIENT_CONFIG, ID_VARIABLE, LedgerStore

BUCKET_VARIABLE = "ANCHOR_BUCKET"
TABLE_VARIABLE = "LEDGER_TABLE"

logger = Logger(json_serializer=json_for_logs)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess"))


class TailBroken(Exception):
    """The records written since the last anchor do not hold; nothing was anchored."""


@cache
def clients() -> tuple[Any, Any]:
    return boto3.client("dynamodb", config=CLIENT_CONFIG), boto3.client("s3", config=CLIENT_CONFIG)


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    dynamodb, s3 = clients()
    store = LedgerStore(dynamodb, os.environ[TABLE_VARIABLE], os.environ.get(ID_VARIABLE, "access"))
    return anchor(store, s3, os.environ[BUCKET_VARIABLE], now=datetime.now(UTC))


def anchor(store: LedgerStore, s3: Any, bucket: str, *, now: datetime) -> dict[str, Any]:
    """Verify the unanchored tail and anchor the head; returns what was anchored."""
    previous = latest_anchor(s3, bucket, store.ledger_id, now)
    start = previous.seq if previous is not None else 0
    # The same verifier an auditor runs; DynamoDB items are at most 400 KB, and
    # parse_record refuses anything over MAX_RECORD_BYTES before parsing it.
    result = verify(store.lines(start), [previous] if previous is not None else [])
    if result.broken is not None:
        metrics.add_metric(name="LedgerTailBroken", unit=MetricUnit.Count, value=1)
        logger.error(
            "ledger tail does not hold; not anchored",
            extra={
                "seq": result.broken.seq,
                "why": result.broken.reason,
                "ledger": store.ledger_id,
            },
        )
        raise TailBroken(f"record {result.broken.seq}: {result.broken.reason}")
    # Anchor the last record verified, not a fresh head: records appended during the
    # check wait for the next run rather than being anchored unchecked.
    if result.last_seq is not None and result.last_hash is not None:
        new = Anchor(result.last_seq, result.last_hash, format_time(now))
    elif previous is not None:
        new = Anchor(previous.seq, previous.head, format_time(now))
    else:
        logger.info("ledger is empty; nothing to anchor", extra={"ledger": store.ledger_id})
        return {"anchored": None}
    key = put_anchor(s3, bucket, store.ledger_id, new)
    metrics.add_metric(name="LedgerRecordsAnchored", unit=MetricUnit.Count, value=result.records)
    logger.info("ledger anchored", extra={"seq": new.seq, "head": new.head, "key": key})
    return {"anchored": new.seq, "head": new.head, "key": key, "checked": result.records}
