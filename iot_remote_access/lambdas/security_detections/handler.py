"""Checks AWS IoT lifecycle events and refused publish/subscribe log entries.

Triggered by IoT topic rules (connected and subscribed lifecycle events) and by a
CloudWatch Logs subscription filter on the IoT log group. Thin: the detections
live in ``iot_remote_access.core.security_detections``; this module decodes the
trigger, counts findings in CloudWatch (EMF) and sends them to EventBridge.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.data_classes import CloudWatchLogsEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.core.security_detections import (
    CONFIG_ENVIRONMENT_VARIABLE,
    MALFORMED_METRIC,
    METRIC_NAMESPACE,
    THING_DIMENSION,
    DetectionConfig,
    Finding,
    MalformedEvent,
    evaluate_iot_log_message,
    evaluate_lifecycle_event,
    findings_by_metric,
    publish_findings,
)

# Escape, never drop: hostile text in a record must not cost the record.
logger = Logger(json_serializer=json_for_logs)
# Read once per cold start: a broken configuration fails every invocation loudly.
CONFIG = DetectionConfig.from_json(os.environ[CONFIG_ENVIRONMENT_VARIABLE])
EVENT_BUS_NAME = os.environ["EVENT_BUS_NAME"]
events = boto3.client("events")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and "awslogs" in event:
        findings, malformed = _from_iot_logs(CloudWatchLogsEvent(event))
    else:
        try:
            findings, malformed = evaluate_lifecycle_event(event, CONFIG), 0
        except MalformedEvent as error:
            logger.warning("malformed lifecycle event", extra={"problem": str(error)})
            _emit_metrics([], malformed=1)
            return _response(400, {"error": str(error)})
    _emit_metrics(findings, malformed)
    for finding in findings:
        logger.info("security finding", extra={"finding": finding.detail()})
    publish_findings(findings, events.put_events, EVENT_BUS_NAME)
    return _response(200, {"findings": len(findings), "malformed": malformed})


def _from_iot_logs(event: CloudWatchLogsEvent) -> tuple[list[Finding], int]:
    data = event.parse_logs_data()
    # CONTROL_MESSAGE: CloudWatch Logs checking that the destination is reachable.
    if data.message_type != "DATA_MESSAGE":
        return [], 0
    findings: list[Finding] = []
    malformed = 0
    for log_event in data.log_events:
        try:
            finding = evaluate_iot_log_message(log_event.message)
        except MalformedEvent as error:
            malformed += 1
            logger.warning(
                "malformed IoT log entry",
                extra={"problem": str(error), "logEventId": log_event.get_id},
            )
            continue
        if finding is not None:
            findings.append(finding)
    return findings, malformed


def _emit_metrics(findings: list[Finding], malformed: int) -> None:
    # Ephemeral, dimensionless fleet metrics: the alarms match exactly these
    # dimensions, so Powertools' default "service" dimension is left out.
    fleet = EphemeralMetrics(namespace=METRIC_NAMESPACE, service="")
    has_fleet_metric = False
    for (name, thing), count in findings_by_metric(findings).items():
        if thing is None:
            fleet.add_metric(name=name, unit=MetricUnit.Count, value=count)
            has_fleet_metric = True
            continue
        device = EphemeralMetrics(namespace=METRIC_NAMESPACE, service="")
        device.add_dimension(name=THING_DIMENSION, value=thing)
        device.add_metric(name=name, unit=MetricUnit.Count, value=count)
        device.flush_metrics()
    if malformed:
        fleet.add_metric(name=MALFORMED_METRIC, unit=MetricUnit.Count, value=malformed)
        has_fleet_metric = True
    if has_fleet_metric:
        fleet.flush_metrics()


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body)}
