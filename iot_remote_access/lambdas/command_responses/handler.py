"""Command responses: completes execution records from the devices' responses topics.

Invoked by an IoT rule on the responses topics with
``{"topic": topic(), "payload": <base64 of the message>, "correlation": <base64>}``:
the payload is passed encoded so that no field of it can shadow the topic. The
thing is taken from the topic (which the device policy ties to the certificate),
never from the payload. A response completes its record only when it comes from
that thing, the record is pending and not expired, and it passes the command's
result schema; anything else is one ``refused`` audit record and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import os
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from iot_remote_access.core import strict_json
from iot_remote_access.core.argument_schema import SchemaError, validate
from iot_remote_access.core.command_executions import PENDING, completion, refusal_reason
from iot_remote_access.core.commands import (
    MAX_RESPONSE_BYTES,
    CommandCatalogue,
    CommandRuleError,
    audit_record,
    format_time,
    parse_response,
    validate_command_id,
)
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.core.topics import DEFAULT_COMMAND_RESPONSES_TOPIC, thing_from_topic
from iot_remote_access.lambdas.command_audit import record as audit
from iot_remote_access.lambdas.command_fanout_counts import count_completion

CATALOGUE_VARIABLE = "COMMAND_CATALOGUE"
RESPONSES_TOPIC_VARIABLE = "RESPONSES_TOPIC"
TABLE_VARIABLE = "EXECUTIONS_TABLE"
#: base64 of the largest response accepted, plus padding.
MAX_ENCODED_BYTES = 4 * (MAX_RESPONSE_BYTES // 3 + 1)

logger = Logger(json_serializer=json_for_logs)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess"))
_table: Any = None


def table() -> Any:
    """One table per container; tests replace ``_table``."""
    global _table
    if _table is None:
        _table = boto3.resource("dynamodb").Table(os.environ[TABLE_VARIABLE])
    return _table


@lru_cache(maxsize=4)
def _catalogue(text: str) -> CommandCatalogue:
    return CommandCatalogue.from_json(text) if text else CommandCatalogue()


class Refused(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # results may be personal data
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return Responder(
        _catalogue(os.environ.get(CATALOGUE_VARIABLE, "")),
        os.environ.get(RESPONSES_TOPIC_VARIABLE) or DEFAULT_COMMAND_RESPONSES_TOPIC,
        table(),
    ).handle(event, now=datetime.now(UTC))


class Responder:
    def __init__(self, catalogue: CommandCatalogue, responses_topic: str, executions: Any) -> None:
        self.catalogue = catalogue
        self.responses_topic = responses_topic
        self.executions = executions

    def handle(self, event: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        topic = event.get("topic")
        thing = thing_from_topic(self.responses_topic, topic) if isinstance(topic, str) else None
        try:
            if thing is None:
                raise Refused("topic", f"topic: {str(topic)[:80]!r} is not a responses topic")
            payload = _decoded(event.get("payload"), "payload")
            correlation = (
                _decoded(event["correlation"], "correlation") if event.get("correlation") else None
            )
            response = parse_response(payload, thing=thing, correlation=correlation)
            item = self.executions.get_item(Key={"id": response.id}, ConsistentRead=True).get(
                "Item"
            )
            reason = refusal_reason(item, thing=thing, now=now)
            if reason:
                raise Refused(reason, f"{reason}: {response.id} cannot be completed by {thing!r}")
            assert item is not None
            self._check_result(str(item["command"]), response.status, response.result)
            self._complete(response.id, thing, completion(response, now=now), now)
            if item.get("fanout") and not count_completion(
                self.executions, str(item["fanout"]), response.status
            ):
                logger.error("fan-out counter not written", extra={"fanout": item["fanout"]})
        except CommandRuleError as error:
            return self._refused(thing, error.field, str(error), command_id=_id(event))
        except Refused as error:
            return self._refused(thing, error.field, error.message, command_id=_id(event))
        audit(
            logger,
            "command response recorded",
            audit_record(
                event="command.response",
                decision="recorded",
                thing=thing,
                commandId=response.id,
                status=response.status,
                at=format_time(now),
            ),
        )
        metrics.add_metric(name="CommandResponses", unit=MetricUnit.Count, value=1)
        return {"recorded": response.id, "status": response.status}

    def _check_result(self, command: str, status: str, result: dict[str, Any]) -> None:
        if status != "succeeded":
            return
        try:
            spec = self.catalogue.get(command)
            validate(result, spec.result, field_name="result")
        except (CommandRuleError, SchemaError) as error:
            raise Refused("result", str(error)) from None

    def _complete(self, command_id: str, thing: str, values: dict[str, Any], now: datetime) -> None:
        names = {f"#{key}": key for key in values}
        updates = {f":{key}": value for key, value in values.items()}
        try:
            self.executions.update_item(
                Key={"id": command_id},
                UpdateExpression="SET " + ", ".join(f"#{key} = :{key}" for key in values),
                # Checked again in the write: a second response or the expiry may have won.
                ConditionExpression="#thing = :thing AND #status = :pending AND #expiresAt >= :now",
                ExpressionAttributeNames={
                    **names,
                    "#thing": "thing",
                    "#status": "status",
                    "#expiresAt": "expiresAt",
                },
                ExpressionAttributeValues={
                    **updates,
                    ":thing": thing,
                    ":pending": PENDING,
                    ":now": format_time(now),
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise Refused("raced", f"raced: {command_id} was completed or expired") from None
            raise

    def _refused(
        self, thing: str | None, field: str, message: str, *, command_id: str | None = None
    ) -> dict[str, Any]:
        audit(
            logger,
            "command response refused",
            audit_record(
                event="command.response",
                decision="refused",
                thing=thing,
                commandId=command_id,
                field=field,
                message=message,
            ),
        )
        metrics.add_metric(name="CommandResponsesRefused", unit=MetricUnit.Count, value=1)
        return {"refused": field}


def _decoded(value: object, field: str) -> bytes:
    if not isinstance(value, str) or len(value) > MAX_ENCODED_BYTES:
        raise Refused(field, f"{field}: not base64 text of at most {MAX_ENCODED_BYTES} characters")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(field, f"{field}: not valid base64") from None


def _id(event: dict[str, Any]) -> str | None:
    """The command id of a refused response, for the audit record, if readable."""
    try:
        document = strict_json.loads(
            base64.b64decode(str(event.get("payload", ""))[:MAX_ENCODED_BYTES], validate=True),
            max_bytes=MAX_RESPONSE_BYTES,
        )
        return validate_command_id(document.get("id")) if isinstance(document, dict) else None
    except (strict_json.StrictJsonError, CommandRuleError, binascii.Error, ValueError):
        return None
