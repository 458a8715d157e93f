"""Incident clock check: every overdue NIS2 clock raises one alarm on the alarm topic.

Runs on a schedule. For each open, significant incident whose early warning (24 h),
notification (72 h) or final report (one month after the notification) is past due
and not recorded as sent: publishes one message to the alarm topic, marks the clock
alarmed (so it alarms once, not every run), and appends ``incident.overdue`` to the
ledger. A failure to publish fails the run (the schedule retries; the function's
Errors alarm covers a persistent failure).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.incident_clock import OVERDUE_EVENT, z
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.lambdas.incidents.store import IncidentConflict, IncidentStore
from iot_remote_access.lambdas.ledger.store import LedgerWriter

TOPIC_VARIABLE = "ALARM_TOPIC_ARN"
logger = Logger(json_serializer=json_for_logs)


@cache
def runtime() -> tuple[LedgerWriter, IncidentStore, Any]:
    writer = LedgerWriter.from_environment()
    store = IncidentStore(writer.client, writer.table_name, writer.ledger_id, writer.retention.days)
    return writer, store, boto3.client("sns")


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    writer, store, sns = runtime()
    return check(writer, store, sns, os.environ[TOPIC_VARIABLE], now=datetime.now(UTC))


def check(
    writer: LedgerWriter, store: IncidentStore, sns: Any, topic: str, *, now: datetime
) -> dict[str, Any]:
    alarms: list[str] = []
    for incident in store.incidents():
        for clock in incident.overdue(now):
            if clock.kind in incident.alarms:
                continue
            subject = f"NIS2 {clock.kind} overdue: {incident.id}"[:100]
            sns.publish(
                TopicArn=topic,
                Subject=subject,
                Message=json.dumps(
                    {
                        "incident": incident.id,
                        "clock": clock.kind,
                        "due": z(clock.due),
                        "detectedAt": z(incident.detected_at),
                        "detection": incident.detection,
                        "thing": incident.thing,
                        "record": "iot-remote-access evidence incident report "
                        f"--id {incident.id} --kind {clock.kind}",
                    }
                ),
            )
            try:
                store.set_once(incident.id, f"alarmed:{clock.kind}", now)
            except IncidentConflict:
                continue  # another run alarmed it meanwhile
            writer.append(
                {
                    "event": OVERDUE_EVENT,
                    "incident": incident.id,
                    "kind": clock.kind,
                    "due": z(clock.due),
                    "at": z(now),
                }
            )
            alarms.append(f"{incident.id}:{clock.kind}")
            logger.warning(
                "incident clock overdue", extra={"incident": incident.id, "clock": clock.kind}
            )
    return {"alarms": alarms}
