"""Tunnel broker: the only principal allowed to call ``iot:OpenTunnel``.

Behind a Lambda function URL with AWS_IAM auth, so every request is SigV4-signed
and ``requestContext.authorizer.iam.userArn`` names the operator. ``POST /tunnels``
with ``{"thing", "service", "minutes", "reason"}`` opens a tunnel if every rule in
``core/tunnel_rules.py`` holds, tags it (requester, reason, expiry) and returns the
source access token to the caller only. Every decision, allowed or refused, is one
structured audit record in this function's log group, and, when the function's
environment names an access ledger (``AccessLedger.connect``), one ledger record:
an opened tunnel's token is handed out only once its record is stored (fail
closed: otherwise the tunnel is closed again and the caller gets 503); a refusal
stands whether or not its record could be stored, and its log line says which.

The destination token is dropped: AWS delivers it to the device on
``$aws/things/{thing}/tunnels/notify``. Tokens never reach a log, an error or a metric.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
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
from iot_remote_access.core.ledger_records import TUNNEL_OPEN
from iot_remote_access.core.log_safety import install_token_redaction, json_for_logs
from iot_remote_access.core.tunnel_rules import (
    TunnelPolicy,
    TunnelRequest,
    TunnelRuleError,
    audit_record,
    aws_error_status,
    check_open_count,
    check_thing_groups,
    expires_at,
    format_time,
    keeps_new_tunnel,
    open_tunnel_ids,
    open_tunnel_parameters,
    parse_request,
    shown_for_audit,
    summaries,
)
from iot_remote_access.lambdas.ledger.recording import Recorder, logged, not_recorded
from iot_remote_access.lambdas.ledger.store import LedgerUnavailable

#: Where the deployment's limits arrive (TunnelPolicy.to_json, set by SecureTunneling).
POLICY_VARIABLE = "TUNNEL_POLICY"
MAX_BODY_BYTES = 4096
#: A request is one flat object; anything nested deeper is refused before parsing.
MAX_BODY_DEPTH = 8
ROUTE = ("POST", "/tunnels")

# Escape, never drop: a lone surrogate in a refused request must not cost its audit record.
logger = Logger(json_serializer=json_for_logs)
# LibraryFunction sets the namespace; the fallback keeps metrics flowing wherever this runs.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess"))
# botocore logs response bodies at DEBUG, and OpenTunnel's carries the access tokens:
# every record of the process is redacted (whatever the level), and quieter by default.
redaction = install_token_redaction(logger)
for _noisy in ("botocore", "boto3", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.INFO)


@dataclass
class Clients:
    iot: Any
    tunneling: Any


_clients: Clients | None = None


def clients() -> Clients:
    """One pair of clients per container; tests replace ``_clients``."""
    global _clients
    if _clients is None:
        config = Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10
        )
        _clients = Clients(
            iot=boto3.client("iot", config=config),
            tunneling=boto3.client("iotsecuretunneling", config=config),
        )
    return _clients


_recorder: Recorder | None = None


def recorder() -> Recorder:
    """The ledger named in the environment (a no-op without one); tests replace ``_recorder``."""
    global _recorder
    if _recorder is None:
        _recorder = Recorder.from_environment()
    return _recorder


@lru_cache(maxsize=4)
def _policy(text: str) -> TunnelPolicy:
    return TunnelPolicy.from_json(text) if text else TunnelPolicy()


class Refused(Exception):
    """A request the broker answers with an error status; nothing was opened."""

    #: A backstop: every rule quotes values shortened; no answer is longer than this.
    MAX_MESSAGE = 600

    def __init__(self, status: int, field: str, message: str) -> None:
        if len(message) > self.MAX_MESSAGE:
            message = f"{message[: self.MAX_MESSAGE - 3]}..."
        super().__init__(message)
        self.status, self.field, self.message = status, field[:100], message
        #: A tunnel opened for this request and not handed out (rolled back), if any: the
        #: refusal's record names it, so CloudTrail's OpenTunnel has a ledger counterpart.
        self.tunnel_id: str | None = None
        self.rolled_back: bool | None = None

    def after_opening(self, tunnel_id: str, closed: bool) -> Refused:
        self.tunnel_id, self.rolled_back = tunnel_id, closed
        return self

    @classmethod
    def from_rule(cls, error: TunnelRuleError) -> Refused:
        return cls(error.status, error.field, str(error))

    @classmethod
    def from_aws(cls, error: Exception, action: str) -> Refused:
        # Only the error code is shown: AWS messages can echo request details.
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            status = aws_error_status(code)
        else:  # no answer at all (timeout, connection): as unavailable as it gets
            code, status = type(error).__name__, 503
        return cls(
            status, "aws", f"aws: {action} failed ({code}); no tunnel was handed out, try again"
        )


class LedgerRefusal(Refused):
    """The opening could not be recorded: nothing is handed out (503, retry later)."""

    def __init__(self, cause: LedgerUnavailable) -> None:
        super().__init__(
            503,
            "ledger",
            "ledger: the decision could not be recorded; no tunnel was handed out, try again",
        )
        self.cause = cause


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    if status == 503:
        headers["Retry-After"] = "5"
    return {"statusCode": status, "headers": headers, "body": json.dumps(body)}


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # the event is not logged, ever
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = LambdaFunctionUrlEvent(event)
    policy = _policy(os.environ.get(POLICY_VARIABLE, ""))
    return Broker(policy, clients(), recorder()).handle(request, now=datetime.now(UTC))


class Broker:
    def __init__(self, policy: TunnelPolicy, aws: Clients, ledger: Recorder | None = None) -> None:
        self.policy = policy
        self.aws = aws
        self.ledger = ledger or Recorder(None)

    def handle(self, event: LambdaFunctionUrlEvent, *, now: datetime) -> dict[str, Any]:
        requester = event.request_context.authorizer.iam.user_arn or None
        raw: object = None
        try:
            if (event.request_context.http.method, event.raw_path) != ROUTE:
                status = 405 if event.raw_path == ROUTE[1] else 404
                raise Refused(
                    status,
                    "route",
                    f"route: {event.request_context.http.method} "
                    f"{event.raw_path[:80]} is not served; allowed: POST /tunnels",
                )
            if requester is None:
                raise Refused(
                    403,
                    "requester",
                    "requester: the request carries no IAM identity; "
                    "allowed: SigV4-signed requests to the AWS_IAM function URL",
                )
            raw = _decode(event)
            request = parse_request(raw, self.policy)
            return self._open(request, requester, now)
        except TunnelRuleError as error:
            refusal = Refused.from_rule(error)
        except Refused as error:
            refusal = error
        except Exception:
            # A bug, not a decision about the request: the caller learns nothing more. A
            # tunnel opened before it is never handed out, and the sweeper closes it.
            logger.exception("tunnel broker failed")
            refusal = Refused(500, "broker", "broker: internal error; no tunnel was handed out")
        self._audit_refusal(refusal, requester, raw)
        return response(refusal.status, {"field": refusal.field, "message": refusal.message})

    def _open(self, request: TunnelRequest, requester: str, now: datetime) -> dict[str, Any]:
        self._check_thing(request.thing)
        before = self._open_ids(request.thing, "ListTunnels")
        try:
            check_open_count(request.thing, before, self.policy)
        except TunnelRuleError as error:
            raise Refused.from_rule(error) from None
        parameters = open_tunnel_parameters(request, requester=requester, now=now)
        try:
            opened = self.aws.tunneling.open_tunnel(**parameters)
        except (ClientError, BotoCoreError) as error:
            raise Refused.from_aws(error, "OpenTunnel") from None
        redaction.remember(opened.get("sourceAccessToken"), opened.get("destinationAccessToken"))
        tunnel_id = opened["tunnelId"]
        self._keep_or_close(tunnel_id, request.thing)
        expiry = expires_at(request, now)
        audit = audit_record(
            event=TUNNEL_OPEN,
            decision="allowed",
            requester=requester,
            thing=request.thing,
            service=request.service,
            minutes=request.minutes,
            reason=request.reason,
            tunnelId=tunnel_id,
            expiresAt=expiry,
            at=format_time(now),
        )
        extra: dict[str, Any] = {"audit": audit}
        if self.ledger.enabled:
            extra["ledger"] = self._record_opened(audit, tunnel_id)
        logger.info("tunnel request allowed", extra=extra)
        metrics.add_metric(name="TunnelsOpened", unit=MetricUnit.Count, value=1)
        return response(
            201,
            {
                "tunnelId": tunnel_id,
                "tunnelArn": opened.get("tunnelArn"),
                "thing": request.thing,
                "service": request.service,
                "minutes": request.minutes,
                "expiresAt": expiry,
                "region": os.environ.get("AWS_REGION", ""),
                "sourceAccessToken": opened["sourceAccessToken"],
            },
        )

    def _record_opened(self, audit: dict[str, Any], tunnel_id: str) -> dict[str, Any] | None:
        """Store the opening before the token leaves (fail closed): on failure the tunnel
        is closed again (or, if even that fails, left to the sweeper: its source never
        connects) and the caller is answered 503."""
        try:
            return logged(self.ledger.append(audit))
        except LedgerUnavailable as error:
            metrics.add_metric(name="LedgerWriteFailures", unit=MetricUnit.Count, value=1)
            closed = self._close_unhanded(tunnel_id)
            raise LedgerRefusal(error).after_opening(tunnel_id, closed) from None

    def _close_unhanded(self, tunnel_id: str) -> bool:
        """Close a tunnel that is not handed out; False when even that failed."""
        try:
            self.aws.tunneling.close_tunnel(tunnelId=tunnel_id, delete=False)
        except (ClientError, BotoCoreError):
            # The sweeper closes it: its source never connects, the token is never handed out.
            logger.exception(
                "could not close a tunnel the broker refused to hand out",
                extra={"tunnelId": tunnel_id},
            )
            return False
        return True

    def _check_thing(self, thing: str) -> None:
        try:
            self.aws.iot.describe_thing(thingName=thing)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise Refused(
                    404,
                    "thing",
                    f"thing: {thing!r} does not exist in this account and "
                    "region; allowed: a registered thing",
                ) from None
            raise Refused.from_aws(error, "DescribeThing") from None
        except BotoCoreError as error:
            raise Refused.from_aws(error, "DescribeThing") from None
        if not self.policy.thing_groups:
            return
        try:
            check_thing_groups(thing, self._groups_of(thing), self.policy)
        except TunnelRuleError as error:
            raise Refused.from_rule(error) from None

    def _groups_of(self, thing: str) -> set[str]:
        """The thing's groups and all their parents: a group allowed covers its subgroups."""
        groups: set[str] = set()
        try:
            pages = self.aws.iot.get_paginator("list_thing_groups_for_thing")
            for page in pages.paginate(thingName=thing):
                for group in page.get("thingGroups", []):
                    groups.add(group["groupName"])
                    described = self.aws.iot.describe_thing_group(thingGroupName=group["groupName"])
                    metadata = described.get("thingGroupMetadata", {})
                    parents = metadata.get("rootToParentThingGroups", [])
                    groups.update(parent["groupName"] for parent in parents)
        except (ClientError, BotoCoreError) as error:
            raise Refused.from_aws(error, "ListThingGroupsForThing") from None
        return groups

    def _open_ids(self, thing: str, action: str) -> list[str]:
        found = []
        token: str | None = None
        try:
            while True:
                page = self.aws.tunneling.list_tunnels(
                    thingName=thing, maxResults=100, **({"nextToken": token} if token else {})
                )
                found.extend(summaries(page.get("tunnelSummaries", [])))
                token = page.get("nextToken")
                if not token:
                    return open_tunnel_ids(found)
        except (ClientError, BotoCoreError) as error:
            raise Refused.from_aws(error, action) from None

    def _keep_or_close(self, tunnel_id: str, thing: str) -> None:
        """Close the tunnel just opened when a concurrent request won, or when checking fails."""
        try:
            after = self._open_ids(thing, "ListTunnels")
            keep = keeps_new_tunnel(tunnel_id, after, self.policy)
            refusal = (
                None
                if keep
                else Refused.from_rule(
                    TunnelRuleError(
                        "thing",
                        f"{thing!r} got another tunnel at the same moment; allowed: at most "
                        f"{self.policy.max_open_tunnels_per_thing} per thing",
                        status=409,
                    )
                )
            )
        except Refused as error:
            refusal = error
        if refusal is None:
            return
        raise refusal.after_opening(tunnel_id, self._close_unhanded(tunnel_id))

    def _audit_refusal(self, refusal: Refused, requester: str | None, raw: object) -> None:
        fields = raw if isinstance(raw, dict) else {}
        audit = audit_record(
            event=TUNNEL_OPEN,
            decision="refused",
            requester=requester,
            thing=shown_for_audit(fields.get("thing")),
            service=shown_for_audit(fields.get("service")),
            minutes=shown_for_audit(fields.get("minutes")),
            reason=shown_for_audit(fields.get("reason")),
            status=refusal.status,
            field=refusal.field,
            message=refusal.message,
            tunnelId=refusal.tunnel_id,
            rolledBack=refusal.rolled_back,
        )
        extra: dict[str, Any] = {"audit": audit}
        if isinstance(refusal, LedgerRefusal):
            # The ledger just failed: a second append would only wait out the same failure.
            extra["ledger"] = not_recorded(refusal.cause)
        elif self.ledger.enabled:
            # A refusal stands unrecorded (nothing was handed out); the log line says so.
            extra["ledger"] = self.ledger.record(audit)
        logger.info("tunnel request refused", extra=extra)
        metrics.add_metric(name="TunnelRequestsRefused", unit=MetricUnit.Count, value=1)


def _decode(event: LambdaFunctionUrlEvent) -> object:
    allowed = "allowed: a JSON object with thing, service, minutes, reason"
    try:
        body = event.decoded_body or ""
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "body", f"body: not UTF-8 text; {allowed}") from None
    try:
        # Size and depth are bounded before parsing; duplicate keys and NaN are refused.
        return strict_json.loads(body, max_bytes=MAX_BODY_BYTES, max_depth=MAX_BODY_DEPTH)
    except strict_json.StrictJsonError as error:
        key = _duplicate_key(body)
        if key is not None:
            raise Refused(
                400, key, f"{key}: appears more than once in one object; allowed: each field once"
            ) from None
        raise Refused(413 if error.too_large else 400, "body", f"body: {error}") from None


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _duplicate_key(body: str) -> str | None:
    """The first key that appears twice in one object, as a field name (shortened).

    Only called after ``strict_json`` refused the body, and only the size and depth
    checks come before its duplicate check: a body refused for a duplicate is within
    both bounds, so parsing it again here is bounded too.
    """

    def first_duplicate(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen[key] = value
        return seen

    try:
        if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
            return None
        if strict_json.nesting_depth(body) > MAX_BODY_DEPTH:
            return None
        json.loads(body, object_pairs_hook=first_duplicate, parse_constant=float)
    except _Duplicate as duplicate:
        key = duplicate.key
        return key if len(key) <= 40 and key.isprintable() else repr(key)[:37] + "..."
    except (ValueError, RecursionError):
        return None
    return None
