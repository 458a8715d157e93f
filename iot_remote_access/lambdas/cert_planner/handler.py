"""Scheduled: ``{"action": "plan"}`` daily, ``{"action": "dispatch"}`` hourly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.lambdas.certs.runtime import emit, runtime

# Escape, never drop: hostile text in a record must not cost the record.
logger = Logger(json_serializer=json_for_logs)
metrics = Metrics()
ACTIONS = ("plan", "dispatch")


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action") if isinstance(event, dict) else None
    if action not in ACTIONS:
        body = {
            "error": f"action: {str(action)[:60]!r} is not allowed; allowed: {', '.join(ACTIONS)}"
        }
        logger.warning("bad planner event", extra=body)
        return {"statusCode": 400, "body": json.dumps(body)}
    sweep = runtime().sweep
    now = datetime.now(UTC)
    outcome = sweep.plan(now) if action == "plan" else sweep.dispatch(now)
    emit(metrics, outcome)
    logger.info(f"{action} done", extra={"result": outcome.body})
    return outcome.response()
