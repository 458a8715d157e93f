"""Turns the security alarms' state changes into security events.

Triggered by an EventBridge rule on ``CloudWatch Alarm State Change`` for the
rate alarms (publish-rate anomaly, top publisher, connection churn). For the
per-device alarms it asks Contributor Insights which devices were on top, so
the event names them. Thin: the logic lives in
``iot_remote_access.core.security_detections``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.core.security_detections import (
    ALARM_ROUTES_ENVIRONMENT_VARIABLE,
    Contributor,
    MalformedEvent,
    alarm_finding,
    parse_alarm_routes,
    parse_alarm_state_change,
    parse_insight_report,
    publish_findings,
)

# Escape, never drop: hostile text in a record must not cost the record.
logger = Logger(json_serializer=json_for_logs)
ROUTES = parse_alarm_routes(os.environ[ALARM_ROUTES_ENVIRONMENT_VARIABLE])
EVENT_BUS_NAME = os.environ["EVENT_BUS_NAME"]
#: How far back the top contributors are looked up: the alarms' evaluation window.
REPORT_WINDOW = timedelta(minutes=15)
REPORT_PERIOD_SECONDS = 300
events = boto3.client("events")
cloudwatch = boto3.client("cloudwatch")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        change = parse_alarm_state_change(event)
    except MalformedEvent as error:
        logger.warning("malformed alarm state change", extra={"problem": str(error)})
        return _response(400, {"error": str(error)})
    route = ROUTES.get(change.alarm_arn)
    if route is None:
        problem = f"resources: {change.alarm_arn!r} is not one of the security alarms"
        logger.warning("unknown alarm", extra={"problem": problem})
        return _response(400, {"error": problem})
    contributors: list[Contributor] = []
    if route.insight_rule and change.state == "ALARM":
        end = datetime.now(UTC)
        report = cloudwatch.get_insight_rule_report(
            RuleName=route.insight_rule,
            StartTime=end - REPORT_WINDOW,
            EndTime=end,
            Period=REPORT_PERIOD_SECONDS,
            MaxContributorCount=10,
            OrderBy="Sum",
        )
        contributors = parse_insight_report(report)
    finding = alarm_finding(change, route.detection, contributors)
    if finding is None:
        return _response(200, {"findings": 0})
    logger.info("security finding", extra={"finding": finding.detail()})
    publish_findings([finding], events.put_events, EVENT_BUS_NAME)
    return _response(200, {"findings": 1})


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body)}
