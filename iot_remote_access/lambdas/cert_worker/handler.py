"""SQS -> Lambda: the planner's fanned-out work items (schedule, start, retire).

Each message holds up to 25 idempotent items; a message with a failed item is
reported back (partial batch response) and retried, then dead-lettered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.lambdas.certs.runtime import runtime
from iot_remote_access.lambdas.certs.sweep import work_items

# Escape, never drop: hostile text in a record must not cost the record.
logger = Logger(json_serializer=json_for_logs)
# Failed messages go back as batchItemFailures even when all fail: same path, then the DLQ.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    runtime().sweep.apply_all(work_items([record.body]), datetime.now(UTC))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
