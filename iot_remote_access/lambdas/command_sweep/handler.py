"""Command sweep: writes ``timed-out`` into pending execution records past their expiry.

Run on a schedule. It queries the table's ``byStatus`` index (status ``pending``,
``expiresAt`` before now) and completes each record with a conditional update that
repeats both conditions, so a response that won the race, or a record completed
meanwhile, is never overwritten. Each record it times out is one audit record
(``event: command.timeout``) in this function's log group and, when configured, in
the access ledger. A run handles at most ``MAX_PER_RUN`` records; the next run
takes the rest.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from iot_remote_access.core.command_executions import (
    BY_STATUS_INDEX,
    PENDING,
    timeout_values,
)
from iot_remote_access.core.commands import audit_record, format_time
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.lambdas.command_audit import record as audit
from iot_remote_access.lambdas.command_fanout_counts import count_completion

TABLE_VARIABLE = "EXECUTIONS_TABLE"
#: Records timed out per run at most (a few seconds of conditional writes).
MAX_PER_RUN = 1000

logger = Logger(json_serializer=json_for_logs)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess"))
_table: Any = None


def table() -> Any:
    """One table per container; tests replace ``_table``."""
    global _table
    if _table is None:
        _table = boto3.resource("dynamodb").Table(os.environ[TABLE_VARIABLE])
    return _table


class SweepIncomplete(Exception):
    """Some timeouts were written but not recorded in the ledger: the run fails."""


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return Sweeper(table()).sweep(now=datetime.now(UTC))


class Sweeper:
    def __init__(self, executions: Any) -> None:
        self.executions = executions

    def sweep(self, *, now: datetime) -> dict[str, int]:
        counts = {"timedOut": 0, "raced": 0, "unrecorded": 0}
        for item in self._expired(now):
            if not self._time_out(item, now):
                counts["raced"] += 1
                continue
            counts["timedOut"] += 1
            # After one failed append the ledger counts as down for this run: the other
            # timeouts are written and logged without waiting for it again.
            recorded = audit(
                logger,
                "command timed out",
                audit_record(
                    event="command.timeout",
                    decision="timed-out",
                    commandId=item["id"],
                    thing=item.get("thing"),
                    command=item.get("command"),
                    requester=item.get("requester"),
                    fanout=item.get("fanout"),
                    expiresAt=item.get("expiresAt"),
                    at=format_time(now),
                ),
                ledger=counts["unrecorded"] == 0,
            )
            if not recorded:
                counts["unrecorded"] += 1  # keep sweeping; the run fails at the end
            if item.get("fanout"):
                count_completion(self.executions, str(item["fanout"]), "timed-out")
        metrics.add_metric(name="CommandsTimedOut", unit=MetricUnit.Count, value=counts["timedOut"])
        if counts["unrecorded"]:
            raise SweepIncomplete(f"{counts['unrecorded']} timeouts are not in the ledger")
        return counts

    def _expired(self, now: datetime) -> Any:
        """Pending records whose expiry has passed, oldest first, at most MAX_PER_RUN."""
        start: dict[str, Any] | None = None
        seen = 0
        while seen < MAX_PER_RUN:
            page = self.executions.query(
                IndexName=BY_STATUS_INDEX,
                KeyConditionExpression="#status = :pending AND #expiresAt < :now",
                ExpressionAttributeNames={"#status": "status", "#expiresAt": "expiresAt"},
                ExpressionAttributeValues={":pending": PENDING, ":now": format_time(now)},
                Limit=min(100, MAX_PER_RUN - seen),
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for item in page.get("Items", []):
                seen += 1
                yield item
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _time_out(self, item: dict[str, Any], now: datetime) -> bool:
        """Write timed-out if the record is still pending and expired; False if it is not."""
        values = timeout_values(now=now)
        try:
            self.executions.update_item(
                Key={"id": item["id"]},
                UpdateExpression="SET " + ", ".join(f"#{key} = :{key}" for key in values),
                # The index is eventually consistent: the write checks again.
                ConditionExpression="#status = :pending AND #expiresAt < :now",
                ExpressionAttributeNames={
                    **{f"#{key}": key for key in values},
                    "#expiresAt": "expiresAt",
                },
                ExpressionAttributeValues={
                    **{f":{key}": value for key, value in values.items()},
                    ":pending": PENDING,
                    ":now": format_time(now),
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
