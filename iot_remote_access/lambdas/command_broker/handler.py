"""Command broker: the only principal allowed to publish to devices' command topics.

Behind a Lambda function URL with AWS_IAM auth, so every request is SigV4-signed
and ``requestContext.authorizer.iam.userArn`` names the operator. ``POST /commands``
with ``{"thing", "name", "arguments", "reason", "purpose"}`` publishes the command
to ``cmd/{thing}/commands`` if every rule of ``core/commands.py`` holds (known
command, caller among its senders, stated purpose equal to the command's, thing
matching the command and existing, arguments valid against the schema). The
command id travels in the payload and as MQTT 5 correlation data next to the
thing's exact response topic. Every decision, allowed or refused, is one
structured audit record in this function's log group; arguments are recorded as
a SHA-256 digest, never their values.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from iot_remote_access.core import strict_json
from iot_remote_access.core.command_executions import (
    BY_MONTH_INDEX,
    BY_THING_INDEX,
    MAX_LIST_SCANNED,
    ListQuery,
    effective_status,
    execution_item,
    months_back,
    parse_list_query,
    shown_record,
)
from iot_remote_access.core.command_fanout import (
    fanout_id_for,
    fanout_item,
    parse_fanout_request,
    progress,
)
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandMessage,
    CommandRuleError,
    Routing,
    SendRequest,
    arguments_digest,
    audit_record,
    command_id_for,
    correlation_data,
    decode_request_body,
    format_time,
    new_command,
    parse_send_request,
    validate_command_id,
)
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.core.topics import THING_NAME_RULE, TopicModel
from iot_remote_access.lambdas.command_audit import AuditUnavailable
from iot_remote_access.lambdas.command_audit import record as audit

#: Set by the CommandBroker construct.
CATALOGUE_VARIABLE = "COMMAND_CATALOGUE"
COMMANDS_TOPIC_VARIABLE = "COMMANDS_TOPIC"
RESPONSES_TOPIC_VARIABLE = "RESPONSES_TOPIC"
THING_NAME_PATTERN_VARIABLE = "THING_NAME_PATTERN"
TABLE_VARIABLE = "EXECUTIONS_TABLE"
QUEUE_VARIABLE = "FANOUT_QUEUE_URL"
ROUTE = ("POST", "/commands")
ROUTES = "POST /commands, GET /commands, GET /commands/<id>, POST /fanouts, GET /fanouts/<id>"
FANOUTS = "/fanouts"
#: How long a fan-out record stays (its targets' records have their own TTL).
FANOUT_RETENTION = timedelta(days=90)
#: A listing reads at most this many months of issue (records live ~4 months).
LIST_MONTHS = 5

logger = Logger(json_serializer=json_for_logs)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess"))
for _noisy in ("botocore", "boto3", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.INFO)


@dataclass
class Clients:
    iot: Any
    iot_data: Any
    #: The execution records' DynamoDB table; None: nothing is recorded.
    executions: Any = None
    #: The fan-out queue's client; None: fan-out is not deployed.
    sqs: Any = None


_clients: Clients | None = None


def clients() -> Clients:
    """One pair of clients per container; tests replace ``_clients``."""
    global _clients
    if _clients is None:
        config = Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10
        )
        table = os.environ.get(TABLE_VARIABLE)
        _clients = Clients(
            iot=boto3.client("iot", config=config),
            iot_data=boto3.client("iot-data", config=config),
            executions=boto3.resource("dynamodb", config=config).Table(table) if table else None,
            sqs=boto3.client("sqs", config=config) if os.environ.get(QUEUE_VARIABLE) else None,
        )
    return _clients


@dataclass(frozen=True)
class Deployment:
    catalogue: CommandCatalogue
    topics: TopicModel
    thing_name_pattern: str


@lru_cache(maxsize=4)
def _deployment(catalogue: str, commands: str, responses: str, pattern: str) -> Deployment:
    topics = TopicModel(
        **{k: v for k, v in {"commands": commands, "responses": responses}.items() if v}
    )
    parsed = CommandCatalogue.from_json(catalogue) if catalogue else CommandCatalogue()
    return Deployment(parsed, topics, pattern or THING_NAME_RULE)


def deployment() -> Deployment:
    return _deployment(
        os.environ.get(CATALOGUE_VARIABLE, ""),
        os.environ.get(COMMANDS_TOPIC_VARIABLE, ""),
        os.environ.get(RESPONSES_TOPIC_VARIABLE, ""),
        os.environ.get(THING_NAME_PATTERN_VARIABLE, ""),
    )


class Refused(Exception):
    """A request the broker answers with an error status; nothing was published."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    @classmethod
    def from_rule(cls, error: CommandRuleError) -> Refused:
        return cls(error.status, error.field, str(error))

    @classmethod
    def from_aws(cls, error: Exception, action: str) -> Refused:
        # Only the error code is shown: AWS messages can echo request details.
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            http = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
            status = 503 if http >= 500 or "Throttl" in code else 502
        else:
            code, status = type(error).__name__, 503
        return cls(status, "aws", f"aws: {action} failed ({code}); the command was not sent")


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    if status == 503:
        headers["Retry-After"] = "5"
    return {"statusCode": status, "headers": headers, "body": strict_json.dumps(body)}


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # arguments may be personal data: never logged
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return Broker(deployment(), clients()).handle(
        LambdaFunctionUrlEvent(event), now=datetime.now(UTC)
    )


class Broker:
    def __init__(self, settings: Deployment, aws: Clients) -> None:
        self.settings = settings
        self.aws = aws

    def handle(self, event: LambdaFunctionUrlEvent, *, now: datetime) -> dict[str, Any]:
        requester = event.request_context.authorizer.iam.user_arn or None
        raw: object = None
        action = "send"
        try:
            action, argument = _check_route(event)
            if requester is None:
                raise Refused(
                    403,
                    "requester",
                    "requester: the request carries no IAM identity; "
                    "allowed: SigV4-signed requests to the AWS_IAM function URL",
                )
            if action == "get":
                return self._get(argument, requester, now)
            if action == "list":
                return self._list(event.query_string_parameters, requester, now)
            if action == "fanout-get":
                return self._fanout_get(argument, requester)
            raw = decode_request_body(_body(event))
            if action == "fanout":
                return self._fanout(raw, requester, now)
            request = parse_send_request(
                raw,
                self.settings.catalogue,
                requester=requester,
                thing_name_pattern=self.settings.thing_name_pattern,
            )
            return self._send(request, requester, now)
        except CommandRuleError as error:
            refusal = Refused.from_rule(error)
        except Refused as error:
            refusal = error
        except Exception:
            logger.exception("command broker failed")
            refusal = Refused(500, "broker", "broker: internal error; the command was not sent")
        self._audit_refusal(f"command.{action}", refusal, requester, raw, now)
        return response(refusal.status, {"field": refusal.field, "message": refusal.message})

    def _send(self, request: SendRequest, requester: str, now: datetime) -> dict[str, Any]:
        self._check_thing(request.thing)
        token = request.client_token
        command = new_command(
            request, now=now, command_id=command_id_for(requester, token) if token else None
        )
        routing = Routing.of(self.settings.topics, request.thing)
        existing = self._record(execution_item(request, command, requester=requester))
        if existing is not None:
            return self._replay(existing, request, requester, now)
        allowed = audit_record(
            event="command.send",
            decision="allowed",
            requester=requester,
            thing=request.thing,
            command=request.spec.name,
            purpose=request.purpose,
            reason=request.reason,
            argumentsDigest=arguments_digest(request.arguments),
            commandId=command.id,
            expiresAt=format_time(command.expires_at),
            at=format_time(now),
        )
        try:
            # Recorded before it is sent: a command that left no evidence is not sent.
            audit(logger, "command sent", allowed, required=True)
            publish_command(self.aws, command, routing, request.spec.timeout_seconds)
        except AuditUnavailable:
            self._mark_unsent(command.id)
            raise Refused(
                503,
                "ledger",
                "ledger: the decision could not be recorded; the command was not sent",
            ) from None
        except Refused:
            self._mark_unsent(command.id)
            audit(logger, "command not sent", {**allowed, "decision": "failed"})
            raise
        metrics.add_metric(name="CommandsSent", unit=MetricUnit.Count, value=1)
        return response(
            202,
            {
                "id": command.id,
                "thing": request.thing,
                "name": request.spec.name,
                "status": "sent",
                "issuedAt": format_time(command.issued_at),
                "expiresAt": format_time(command.expires_at),
                "responseTopic": routing.responses,
            },
        )

    def _get(self, command_id: str, requester: str, now: datetime) -> dict[str, Any]:
        """One execution record, for a caller allowed to send its command (else 404)."""
        validate_command_id(command_id)
        item = None
        if self.aws.executions is not None:
            try:
                found = self.aws.executions.get_item(Key={"id": command_id}, ConsistentRead=True)
            except (ClientError, BotoCoreError) as error:
                raise Refused.from_aws(error, "GetItem") from None
            item = found.get("Item")
        specs = {spec.name: spec for spec in self.settings.catalogue.commands}
        spec = specs.get(str(item.get("command"))) if item else None
        # Someone who may not send the command learns nothing, not even that it exists.
        if item is None or spec is None or not spec.may_send(requester) or "kind" in item:
            raise Refused(404, "id", f"id: {command_id!r} is not a command you may read")
        audit(
            logger,
            "command read",
            audit_record(
                event="command.get",
                decision="allowed",
                requester=requester,
                commandId=command_id,
                at=format_time(now),
            ),
        )
        metrics.add_metric(name="CommandsRead", unit=MetricUnit.Count, value=1)
        return response(200, shown_record(item, now=now))

    def _list(
        self, parameters: dict[str, str] | None, requester: str, now: datetime
    ) -> dict[str, Any]:
        """Records the caller may read, newest first; at most MAX_LIST_SCANNED are read."""
        query = parse_list_query(parameters, thing_name_pattern=self.settings.thing_name_pattern)
        readable = {s.name for s in self.settings.catalogue.commands if s.may_send(requester)}
        items: list[dict[str, Any]] = []
        scanned, truncated = 0, False
        for page in self._pages(query, now) if readable else iter(()):
            for item in page:
                scanned += 1
                if item.get("command") in readable and query.matches(item, now=now):
                    items.append(shown_record(item, now=now))
                if len(items) == query.limit:
                    break
            if len(items) == query.limit:
                break
            if scanned >= MAX_LIST_SCANNED:
                truncated = True
                break
        audit(
            logger,
            "commands listed",
            audit_record(
                event="command.list",
                decision="allowed",
                requester=requester,
                thing=query.thing,
                status=query.status,
                count=len(items),
                at=format_time(now),
            ),
        )
        return response(200, {"items": items, "truncated": truncated, "scanned": scanned})

    def _fanout(self, raw: object, requester: str, now: datetime) -> dict[str, Any]:
        """Record a fleet fan-out and queue its first wave (the dispatcher sends it)."""
        if self.aws.sqs is None or self.aws.executions is None:
            raise Refused(404, "route", "route: fan-out is not deployed; allowed: POST /commands")
        request = parse_fanout_request(
            raw,
            self.settings.catalogue,
            requester=requester,
            thing_name_pattern=self.settings.thing_name_pattern,
        )
        token = request.client_token
        fanout_id = fanout_id_for(requester, token) if token else str(uuid.uuid4())
        ttl = int((now + FANOUT_RETENTION).timestamp())
        item = fanout_item(fanout_id, request, requester=requester, now=now, ttl=ttl)
        try:
            self.aws.executions.put_item(Item=item, ConditionExpression="attribute_not_exists(id)")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise Refused.from_aws(error, "PutItem") from None
            return self._fanout_replay(fanout_id, item)
        except BotoCoreError as error:
            raise Refused.from_aws(error, "PutItem") from None
        allowed = audit_record(
            event="command.fanout",
            decision="allowed",
            requester=requester,
            command=request.spec.name,
            purpose=request.purpose,
            reason=request.reason,
            argumentsDigest=arguments_digest(request.arguments),
            fanout=fanout_id,
            thingGroup=request.thing_group,
            targets=len(request.things) or None,
            ratePerSecond=request.rate_per_second,
            abortPercent=request.abort_percent,
            at=format_time(now),
        )
        try:
            audit(logger, "fan-out started", allowed, required=True)
            self.aws.sqs.send_message(
                QueueUrl=os.environ.get(QUEUE_VARIABLE, ""),
                MessageBody=strict_json.dumps({"fanout": fanout_id, "cursor": None}),
            )
        except (AuditUnavailable, ClientError, BotoCoreError) as error:
            self.aws.executions.delete_item(Key={"id": fanout_id})
            if isinstance(error, AuditUnavailable):
                raise Refused(
                    503, "ledger", "ledger: not recorded; the fan-out was not started"
                ) from None
            raise Refused.from_aws(error, "SendMessage") from None
        metrics.add_metric(name="FanoutsStarted", unit=MetricUnit.Count, value=1)
        return response(202, progress(item))

    def _fanout_replay(self, fanout_id: str, item: dict[str, Any]) -> dict[str, Any]:
        found = self.aws.executions.get_item(Key={"id": fanout_id}, ConsistentRead=True)
        existing = found.get("Item") or {}
        same = ("command", "arguments", "things", "thingGroup")
        if any(existing.get(key) != item.get(key) for key in same):
            raise Refused(
                409,
                "clientToken",
                "clientToken: already used for another fan-out; allowed: a new token",
            )
        return response(200, progress(existing))

    def _fanout_get(self, fanout_id: str, requester: str) -> dict[str, Any]:
        validate_command_id(fanout_id)
        item = None
        if self.aws.executions is not None:
            try:
                found = self.aws.executions.get_item(Key={"id": fanout_id}, ConsistentRead=True)
            except (ClientError, BotoCoreError) as error:
                raise Refused.from_aws(error, "GetItem") from None
            item = found.get("Item")
        specs = {spec.name: spec for spec in self.settings.catalogue.commands}
        spec = specs.get(str(item.get("command"))) if item else None
        if (
            item is None
            or item.get("kind") != "fanout"
            or spec is None
            or not spec.may_send(requester)
        ):
            raise Refused(404, "id", f"id: {fanout_id!r} is not a fan-out you may read")
        return response(200, progress(item))

    def _pages(self, query: ListQuery, now: datetime) -> Any:
        """Pages of records, newest first: one thing's, or the fleet's month by month."""
        if self.aws.executions is None:
            return
        if query.thing is not None:
            partitions = [(BY_THING_INDEX, "thing", query.thing)]
        else:
            partitions = [(BY_MONTH_INDEX, "issuedMonth", m) for m in months_back(now, LIST_MONTHS)]
        for index, key, value in partitions:
            start: dict[str, Any] | None = None
            while True:
                try:
                    page = self.aws.executions.query(
                        IndexName=index,
                        KeyConditionExpression="#k = :v",
                        ExpressionAttributeNames={"#k": key},
                        ExpressionAttributeValues={":v": value},
                        ScanIndexForward=False,
                        Limit=100,
                        **({"ExclusiveStartKey": start} if start else {}),
                    )
                except (ClientError, BotoCoreError) as error:
                    raise Refused.from_aws(error, "Query") from None
                yield page.get("Items", [])
                start = page.get("LastEvaluatedKey")
                if not start:
                    break

    def _record(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """The pending record, written before publishing so a fast answer finds it.

        Returns the record already there when the id exists (a retried client token).
        """
        if self.aws.executions is None:
            return None
        try:
            self.aws.executions.put_item(Item=item, ConditionExpression="attribute_not_exists(id)")
            return None
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise Refused.from_aws(error, "PutItem") from None
        except BotoCoreError as error:
            raise Refused.from_aws(error, "PutItem") from None
        try:
            found = self.aws.executions.get_item(Key={"id": item["id"]}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as error:
            raise Refused.from_aws(error, "GetItem") from None
        return dict(found.get("Item") or item)

    def _replay(
        self, existing: dict[str, Any], request: SendRequest, requester: str, now: datetime
    ) -> dict[str, Any]:
        """A retried request: the same command again is answered, anything else refused."""
        same = (
            existing.get("thing"),
            existing.get("command"),
            existing.get("argumentsDigest"),
        ) == (
            request.thing,
            request.spec.name,
            arguments_digest(request.arguments),
        )
        if not same:
            raise Refused(
                409,
                "clientToken",
                f"clientToken: {request.client_token!r} was used for another thing, command or "
                "arguments; allowed: a new token for a new command",
            )
        audit(
            logger,
            "command replayed",
            audit_record(
                event="command.send",
                decision="replayed",
                requester=requester,
                thing=request.thing,
                command=request.spec.name,
                commandId=existing["id"],
                at=format_time(now),
            ),
        )
        metrics.add_metric(name="CommandsReplayed", unit=MetricUnit.Count, value=1)
        return response(
            200,
            {
                "id": existing["id"],
                "thing": request.thing,
                "name": request.spec.name,
                "status": effective_status(existing, now=now),
                "issuedAt": existing.get("issuedAt"),
                "expiresAt": existing.get("expiresAt"),
                "responseTopic": Routing.of(self.settings.topics, request.thing).responses,
            },
        )

    def _mark_unsent(self, command_id: str) -> None:
        if self.aws.executions is None:
            return
        try:
            self.aws.executions.update_item(
                Key={"id": command_id},
                UpdateExpression="SET #status = :failed, #error = :error",
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues={":failed": "failed", ":error": "not published"},
            )
        except (ClientError, BotoCoreError):
            # Left pending, it reads as timed-out after its expiry: still not succeeded.
            logger.exception("could not mark an unsent command", extra={"commandId": command_id})

    def _check_thing(self, thing: str) -> None:
        try:
            self.aws.iot.describe_thing(thingName=thing)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise Refused(
                    404,
                    "thing",
                    f"thing: {thing!r} does not exist in this account and region; "
                    "allowed: a registered thing",
                ) from None
            raise Refused.from_aws(error, "DescribeThing") from None
        except BotoCoreError as error:
            raise Refused.from_aws(error, "DescribeThing") from None

    def _audit_refusal(
        self, event: str, refusal: Refused, requester: str | None, raw: object, now: datetime
    ) -> None:
        fields = raw if isinstance(raw, dict) else {}
        arguments = fields.get("arguments")
        audit(
            logger,
            "command refused",
            audit_record(
                event=event,
                decision="refused",
                requester=requester,
                thing=_for_audit(fields.get("thing")),
                command=_for_audit(fields.get("name")),
                purpose=_for_audit(fields.get("purpose")),
                reason=_for_audit(fields.get("reason")),
                argumentsDigest=(
                    arguments_digest(arguments) if isinstance(arguments, dict) else None
                ),
                status=refusal.status,
                field=refusal.field,
                message=refusal.message,
                at=format_time(now),
            ),
        )
        metrics.add_metric(name="CommandsRefused", unit=MetricUnit.Count, value=1)


def publish_command(aws: Clients, command: CommandMessage, routing: Routing, timeout: int) -> None:
    """Publish one command to its thing (QoS 1, MQTT 5 properties); Refused if AWS would not."""
    try:
        aws.iot_data.publish(
            topic=routing.commands,
            qos=1,
            payload=command.payload(),
            contentType="application/json",
            payloadFormatIndicator="UTF8_DATA",
            responseTopic=routing.responses,
            # iot-data takes correlation data base64-encoded; devices receive the bytes.
            correlationData=base64.b64encode(correlation_data(command.id)).decode("ascii"),
            # A command nobody received in time must not run late: the broker drops it.
            messageExpiry=timeout,
        )
    except (ClientError, BotoCoreError) as error:
        raise Refused.from_aws(error, "Publish") from None


def _check_route(event: LambdaFunctionUrlEvent) -> tuple[str, str]:
    """(action, argument): send, list, or get with the id; anything else is refused."""
    method, path = event.request_context.http.method, event.raw_path
    base = ROUTE[1]
    if path == base and method in ("POST", "GET"):
        return ("send" if method == "POST" else "list"), ""
    if method == "GET" and path.startswith(f"{base}/"):
        return "get", path.removeprefix(f"{base}/")
    if (method, path) == ("POST", FANOUTS):
        return "fanout", ""
    if method == "GET" and path.startswith(f"{FANOUTS}/"):
        return "fanout-get", path.removeprefix(f"{FANOUTS}/")
    raise Refused(
        405 if path in (base, FANOUTS) else 404,
        "route",
        f"route: {method} {path[:80]} is not served; allowed: {ROUTES}",
    )


def _body(event: LambdaFunctionUrlEvent) -> str:
    try:
        return event.decoded_body or ""
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "body", "body: not UTF-8 text; allowed: a JSON object") from None


def _for_audit(value: object) -> object:
    """A request value as recorded in a refusal: short strings as they are, else a repr."""
    if value is None or (isinstance(value, str) and len(value) <= 256):
        return value
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
