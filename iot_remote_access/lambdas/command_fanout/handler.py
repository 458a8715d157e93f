"""Fan-out dispatcher: sends one wave of a fleet fan-out per SQS message, at the rollout rate.

Why SQS and one function (not Step Functions): a wave is a few hundred conditional
writes and publishes, the rate is the SQS delay between waves (up to 15 minutes),
and the abort check is one read of the fan-out's counters before each wave. Step
Functions' Map state would cost several state transitions per target (tens of
thousands for 10,000 things) and its concurrency limit is not a rate.

Each message is ``{"fanout": id, "cursor": <where this wave starts> | null}``. The
dispatcher reads the fan-out record (``kind: fanout``), stops if it is no longer
running, aborts it when more than ``abortPercent`` % of the completed targets
failed, and otherwise sends the next wave: per target one conditional PutItem of
its execution record (id derived from the fan-out id and the thing, so a
redelivered message never sends twice) and one Publish. It then advances the
cursor with a conditional write (a redelivery cannot count a wave twice) and
queues the next wave with a delay of ``wave size / rate`` seconds.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from iot_remote_access.core import strict_json
from iot_remote_access.core.command_executions import execution_item
from iot_remote_access.core.command_fanout import (
    ABORTED,
    DISPATCHED,
    RUNNING,
    should_abort,
    target_id,
    wave_plan,
)
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    Routing,
    SendRequest,
    audit_record,
    check_thing_for,
    format_time,
    new_command,
    validate_thing,
)
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.core.topics import THING_NAME_RULE, TopicModel
from iot_remote_access.lambdas.command_audit import record as audit
from iot_remote_access.lambdas.command_broker.handler import (
    Clients,
    Refused,
    clients,
    deployment,
    publish_command,
)
from iot_remote_access.lambdas.command_fanout_counts import count_completion

QUEUE_VARIABLE = "FANOUT_QUEUE_URL"

logger = Logger(json_serializer=json_for_logs)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess"))


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = deployment()
    dispatcher = Dispatcher(
        settings.catalogue,
        settings.topics,
        settings.thing_name_pattern,
        clients(),
        os.environ.get(QUEUE_VARIABLE, ""),
    )
    for record in event.get("Records", []):
        message = json.loads(record["body"])
        dispatcher.run(str(message["fanout"]), message.get("cursor"), now=datetime.now(UTC))
    return {}


class Dispatcher:
    def __init__(
        self,
        catalogue: CommandCatalogue,
        topics: TopicModel,
        thing_name_pattern: str,
        aws: Clients,
        queue_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.catalogue = catalogue
        self.topics = topics
        self.pattern = thing_name_pattern or THING_NAME_RULE
        self.aws = aws
        self.queue_url = queue_url

    def run(self, fanout_id: str, cursor: str | None, *, now: datetime) -> str:
        """Dispatch one wave; returns what happened (for logs and tests)."""
        began = self.clock()
        item = self.aws.executions.get_item(Key={"id": fanout_id}, ConsistentRead=True).get("Item")
        if item is None or item.get("kind") != "fanout" or item.get("status") != RUNNING:
            return "stopped"
        if item.get("cursor") != cursor:
            return "duplicate"  # this wave was counted already (a redelivered message)
        if should_abort(
            succeeded=int(item.get("succeeded", 0)),
            failed=int(item.get("failed", 0)),
            abort_percent=int(item["abortPercent"]),
        ):
            self._finish(item, ABORTED, now, error=f"more than {item['abortPercent']} % failed")
            return ABORTED
        size, delay = wave_plan(int(item["ratePerSecond"]))
        things, next_cursor = self._wave(item, cursor, size)
        sent = refused = 0
        for thing in things:
            if self._target(item, thing, now):
                sent += 1
            else:
                refused += 1
        self._advance(item, cursor, next_cursor, sent, refused, now)
        metrics.add_metric(name="FanoutTargetsSent", unit=MetricUnit.Count, value=sent)
        if next_cursor is None:
            return DISPATCHED
        # The wave's own sending time counts towards the interval: the rate is kept.
        left = max(0, math.ceil(delay - (self.clock() - began)))
        self.aws.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps({"fanout": fanout_id, "cursor": next_cursor}),
            DelaySeconds=left,
        )
        return "next"

    def _wave(self, item: dict[str, Any], cursor: str | None, size: int) -> tuple[list[str], Any]:
        """This wave's things and where the next one starts (None: this is the last)."""
        if "thingGroup" in item:
            return self._group_wave(item["thingGroup"], cursor, size)
        start = int(cursor or 0)
        listed = list(item["things"])
        end = start + size
        return listed[start:end], (str(end) if end < len(listed) else None)

    def _group_wave(self, group: str, cursor: str | None, size: int) -> tuple[list[str], Any]:
        """A group's wave: ``cursor`` is ``<page token>|<offset in that page>``.

        AWS answers pages of ``maxResults`` = the wave's size, so the offset stays 0;
        an API that answers longer pages (moto does) is read at increasing offsets.
        """
        token, _, offset_text = (cursor or "|0").rpartition("|")
        page = self.aws.iot.list_things_in_thing_group(
            thingGroupName=group, maxResults=size, **({"nextToken": token} if token else {})
        )
        things = list(page.get("things", []))
        offset = int(offset_text or 0)
        end = offset + size
        if end < len(things):
            return things[offset:end], f"{token}|{end}"
        following = page.get("nextToken")
        return things[offset:end], (f"{following}|0" if following else None)

    def _target(self, item: dict[str, Any], thing: str, now: datetime) -> bool:
        """Send the command to one thing; False when it was refused or not sent."""
        try:
            spec = self.catalogue.get(item["command"])
            validate_thing(thing, pattern=self.pattern)
            check_thing_for(spec, thing)
            if "things" in item:  # a listed name may be unregistered; a group's are not
                self._registered(thing)
        except CommandRuleError as error:
            self._audit_target(item, thing, None, "refused", now, message=str(error))
            return False
        request = SendRequest(
            thing, spec, strict_json.loads(item["arguments"]), item["reason"], item["purpose"]
        )
        command = new_command(request, now=now, command_id=target_id(item["id"], thing))
        record = {**execution_item(request, command, requester=item["requester"])}
        record["fanout"] = item["id"]
        # Recorded before it is sent (AuditUnavailable ends the run: SQS delivers the wave
        # again later); a redelivery may record a target twice, never send it twice.
        self._audit_target(item, thing, command.id, "allowed", now, required=True)
        try:
            self.aws.executions.put_item(
                Item=record, ConditionExpression="attribute_not_exists(id)"
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return True  # sent by an earlier delivery of this wave
            raise
        try:
            publish_command(self.aws, command, Routing.of(self.topics, thing), spec.timeout_seconds)
        except Refused as error:
            self._audit_target(item, thing, command.id, "failed", now, message=error.message)
            self._mark_failed(command.id, item["id"])
        return True  # dispatched (a failed publish counts as dispatched, and as failed)

    def _registered(self, thing: str) -> None:
        try:
            self.aws.iot.describe_thing(thingName=thing)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            raise CommandRuleError(
                "thing", f"{thing!r} does not exist; allowed: a registered thing", status=404
            ) from None

    def _audit_target(
        self,
        item: dict[str, Any],
        thing: str,
        command_id: str | None,
        decision: str,
        now: datetime,
        *,
        message: str | None = None,
        required: bool = False,
    ) -> None:
        audit(
            logger,
            f"fan-out target {decision}",
            audit_record(
                event="command.send",
                decision=decision,
                requester=item["requester"],
                thing=thing,
                command=item["command"],
                purpose=item["purpose"],
                reason=item["reason"],
                fanout=item["id"],
                commandId=command_id,
                message=message,
                at=format_time(now),
            ),
            required=required,
        )

    def _mark_failed(self, command_id: str, fanout_id: str) -> None:
        self.aws.executions.update_item(
            Key={"id": command_id},
            UpdateExpression="SET #status = :failed, #error = :error",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues={":failed": "failed", ":error": "not published"},
        )
        count_completion(self.aws.executions, fanout_id, "failed")

    def _advance(
        self,
        item: dict[str, Any],
        cursor: str | None,
        next_cursor: str | None,
        sent: int,
        refused: int,
        now: datetime,
    ) -> None:
        """Count the wave and move the cursor, once: the condition is the wave's cursor."""
        names = {"#cursor": "cursor", "#dispatched": "dispatched", "#refused": "refused"}
        values: dict[str, Any] = {":sent": sent, ":refused": refused, ":next": next_cursor}
        sets = ["#cursor = :next"]
        if next_cursor is None:  # the last wave: every target has been sent
            sets += ["#status = :done", "#finishedAt = :now"]
            names |= {"#status": "status", "#finishedAt": "finishedAt"}
            values |= {":done": DISPATCHED, ":now": format_time(now)}
        update = f"SET {', '.join(sets)} ADD #dispatched :sent, #refused :refused"
        condition = "attribute_not_exists(#cursor)" if cursor is None else "#cursor = :cursor"
        if cursor is not None:
            values[":cursor"] = cursor
        try:
            self.aws.executions.update_item(
                Key={"id": item["id"]},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def _finish(self, item: dict[str, Any], status: str, now: datetime, *, error: str) -> None:
        try:
            self.aws.executions.update_item(
                Key={"id": item["id"]},
                UpdateExpression="SET #status = :status, #finishedAt = :now, #error = :error",
                ConditionExpression="#status = :running",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#finishedAt": "finishedAt",
                    "#error": "error",
                },
                ExpressionAttributeValues={
                    ":status": status,
                    ":now": format_time(now),
                    ":error": error,
                    ":running": RUNNING,
                },
            )
        except (ClientError, BotoCoreError):
            logger.exception("could not finish a fan-out", extra={"fanout": item["id"]})
            raise
        audit(
            logger,
            "fan-out aborted",
            audit_record(
                event="command.fanout",
                decision=status,
                requester=item["requester"],
                command=item["command"],
                fanout=item["id"],
                succeeded=int(item.get("succeeded", 0)),
                failed=int(item.get("failed", 0)),
                message=error,
                at=format_time(now),
            ),
        )
