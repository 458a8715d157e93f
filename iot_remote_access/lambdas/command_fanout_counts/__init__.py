"""Counting a fan-out's completed targets (shared by the responses function and the sweep).

A fan-out record (same table as the executions, ``kind: fanout``) keeps counters the
dispatcher reads before each wave to decide whether to abort. Each target's record
reaches a final status exactly once (conditional writes), and the function that wrote
it adds one here, so the counters are exact up to a failed counter write (logged by
the caller; the dispatcher then under-counts, never over-counts, failures).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


def count_completion(executions: Any, fanout_id: str, status: str) -> bool:
    """Add one completed target (``succeeded`` or a failure) to fan-out ``fanout_id``.

    Returns False when the counter could not be written (no such fan-out, AWS error).
    """
    counter = "succeeded" if status == "succeeded" else "failed"
    try:
        executions.update_item(
            Key={"id": fanout_id},
            UpdateExpression="ADD #counter :one, #completed :one",
            ConditionExpression="#kind = :fanout",
            ExpressionAttributeNames={
                "#counter": counter,
                "#completed": "completed",
                "#kind": "kind",
            },
            ExpressionAttributeValues={":one": 1, ":fanout": "fanout"},
        )
    except (ClientError, BotoCoreError):
        return False
    return True
