"""IoT rule -> Lambda: a device confirms, from its new certificate, that it rotated.

Only then is the old certificate set INACTIVE (and deleted after the grace period).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.lambdas.certs.runtime import emit, runtime

# Escape, never drop: hostile text in a record must not cost the record.
logger = Logger(json_serializer=json_for_logs)
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rotation = runtime().rotation
    rotation.ledger.take_last()  # a note left by an earlier, failed invocation is not ours
    outcome = rotation.confirm(event, datetime.now(UTC))
    emit(metrics, outcome)
    log = logger.info if outcome.status < 400 else logger.warning
    log(
        "confirmation handled",
        extra={
            "status": outcome.status,
            "result": outcome.body,
            "audit": outcome.audit("certificate.confirm", event),
            # Whether the access ledger holds this decision (absent without a ledger).
            **({"ledger": note} if (note := rotation.ledger.take_last()) else {}),
        },
    )
    return outcome.response()
