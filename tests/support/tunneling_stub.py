"""Test helpers for Secure Tunneling: a STUBBED Secure Tunneling API and function URL events.

moto has no Secure Tunneling API. ``StubbedSecureTunneling`` is a real boto3
``iotsecuretunneling`` client with a botocore ``Stubber``: each expected call is
queued with the response the real API returns. The Stubber checks both the
request parameters and the response against botocore's service model, so the
shapes are the real API's (OpenTunnel: tunnelId, tunnelArn, sourceAccessToken,
destinationAccessToken; ListTunnels: tunnelSummaries, nextToken; DescribeTunnel:
tunnel{...}). Every call is also recorded, so a test can prove that OpenTunnel
was never attempted.

Function URL events follow AWS's payload format 2.0 for function URLs with
AWS_IAM auth (``requestContext.authorizer.iam``):
https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads
"""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Powertools reads these when the handler modules are imported.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "iot-remote-access-tests")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess")
os.environ.setdefault("AWS_REGION", "eu-west-1")

import boto3
from botocore.stub import ANY, Stubber

ACCOUNT = "123456789012"
REGION = "eu-west-1"
OPERATOR_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators/alice"
#: What OpenTunnel returns: opaque secrets that must never be logged.
SOURCE_TOKEN_PREFIX = "AQGAAXiVzSmRL1VTRlCtTa4xSOURCE"
DESTINATION_TOKEN_PREFIX = "AQGAAXiVzSmRL1VTRlCtTa4xDEST"


def tunnel_arn(tunnel_id: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/{tunnel_id}"


class StubbedSecureTunneling:
    """A real ``iotsecuretunneling`` client answered by a botocore Stubber (no moto support)."""

    def __init__(self) -> None:
        self.client = boto3.client("iotsecuretunneling", region_name=REGION)
        self.stubber = Stubber(self.client)
        self.calls: list[str] = []
        self.parameters: list[tuple[str, dict[str, Any]]] = []
        self.tokens: list[str] = []
        # Recorded before the Stubber sees the call: an unexpected call is counted too.
        self.client.meta.events.register("provide-client-params.iotsecuretunneling.*", self._record)
        self.stubber.activate()

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append(model.name)
        self.parameters.append((model.name, dict(params)))

    def count(self, operation: str) -> int:
        return self.calls.count(operation)

    def expect_list(
        self,
        tunnels: list[dict[str, Any]],
        *,
        thing: str | None = None,
        next_token: str | None = None,
        given_token: str | None = None,
    ) -> None:
        expected: dict[str, Any] = {"maxResults": 100}
        if thing is not None:
            expected["thingName"] = thing
        if given_token is not None:
            expected["nextToken"] = given_token
        response: dict[str, Any] = {"tunnelSummaries": tunnels}
        if next_token is not None:
            response["nextToken"] = next_token
        self.stubber.add_response("list_tunnels", response, expected)

    def expect_open(
        self, *, thing: str, service: str = "SSH", minutes: int = 60, reason: str = ANY
    ) -> str:
        """Queue a successful OpenTunnel; return the tunnel id. Parameters are checked."""
        tunnel_id = str(uuid.uuid4())
        source = f"{SOURCE_TOKEN_PREFIX}{uuid.uuid4().hex}"
        self.tokens += [source, f"{DESTINATION_TOKEN_PREFIX}{tunnel_id}"]
        self.stubber.add_response(
            "open_tunnel",
            {
                "tunnelId": tunnel_id,
                "tunnelArn": tunnel_arn(tunnel_id),
                "sourceAccessToken": source,
                "destinationAccessToken": self.tokens[-1],
            },
            {
                "description": reason,
                "destinationConfig": {"thingName": thing, "services": [service]},
                "timeoutConfig": {"maxLifetimeTimeoutMinutes": minutes},
                "tags": ANY,
            },
        )
        return tunnel_id

    def expect_describe(self, tunnel: dict[str, Any]) -> None:
        self.stubber.add_response(
            "describe_tunnel", {"tunnel": tunnel}, {"tunnelId": tunnel["tunnelId"]}
        )

    def expect_close(self, tunnel_id: str) -> None:
        self.stubber.add_response("close_tunnel", {}, {"tunnelId": tunnel_id, "delete": False})

    def expect_error(self, method: str, code: str, status: int = 400) -> None:
        self.stubber.add_client_error(
            method,
            service_error_code=code,
            service_message=f"{code} (stubbed)",
            http_status_code=status,
        )

    def sent(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of every call of ``operation``, in order."""
        return [params for name, params in self.parameters if name == operation]


def summary(
    tunnel_id: str,
    *,
    status: str = "OPEN",
    created: datetime | None = None,
    description: str = "INC-1 check",
) -> dict[str, Any]:
    """A ListTunnels ``tunnelSummaries`` item."""
    created = created or datetime.now(UTC) - timedelta(minutes=5)
    return {
        "tunnelId": tunnel_id,
        "tunnelArn": tunnel_arn(tunnel_id),
        "status": status,
        "description": description,
        "createdAt": created,
        "lastUpdatedAt": created,
    }


def described(
    tunnel_id: str,
    *,
    thing: str = "sensor-1",
    status: str = "OPEN",
    created: datetime,
    minutes: int = 60,
    source: str = "DISCONNECTED",
    source_changed: datetime | None = None,
    expires_at: str | None = None,
    requester: str = OPERATOR_ARN,
) -> dict[str, Any]:
    """A DescribeTunnel ``tunnel``, as the broker leaves it (tags included)."""
    tags = [
        {"key": "iot-remote-access:requester", "value": requester},
        {"key": "iot-remote-access:reason", "value": "INC-1 check"},
    ]
    if expires_at is not None:
        tags.append({"key": "iot-remote-access:expires-at", "value": expires_at})
    return {
        "tunnelId": tunnel_id,
        "tunnelArn": tunnel_arn(tunnel_id),
        "status": status,
        "sourceConnectionState": {"status": source, "lastUpdatedAt": source_changed or created},
        "destinationConnectionState": {"status": "CONNECTED", "lastUpdatedAt": created},
        "description": "INC-1 check",
        "destinationConfig": {"thingName": thing, "services": ["SSH"]},
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": minutes},
        "tags": tags,
        "createdAt": created,
        "lastUpdatedAt": created,
    }


def url_event(
    body: str | bytes | None,
    *,
    method: str = "POST",
    path: str = "/tunnels",
    user_arn: str | None = OPERATOR_ARN,
    base64_body: bool = False,
) -> dict[str, Any]:
    """A Lambda function URL event (payload 2.0) with AWS_IAM auth."""
    iam = (
        None
        if user_arn is None
        else {
            "accessKey": "ASIAEXAMPLEOPERATOR",
            "accountId": ACCOUNT,
            "callerId": "AROAEXAMPLE:alice",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": user_arn,
            "userId": "AROAEXAMPLE:alice",
        }
    )
    if isinstance(body, bytes) or base64_body:
        raw = body if isinstance(body, bytes) else (body or "").encode()
        body, encoded = base64.b64encode(raw).decode(), True
    else:
        encoded = False
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc.lambda-url.eu-west-1.on.aws"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "abc",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "iot-remote-access",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:03:00:00 +0000",
            "timeEpoch": 1795662000000,
        },
        "isBase64Encoded": encoded,
    }
    if iam is not None:
        event["requestContext"]["authorizer"] = {"iam": iam}
    if body is not None:
        event["body"] = body
    return event


def json_event(payload: Any, **kwargs: Any) -> dict[str, Any]:
    return url_event(json.dumps(payload), **kwargs)


@dataclass
class LambdaContext:
    """The attributes Powertools' inject_lambda_context reads."""

    function_name: str = "iot-remote-access-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"


class Utf8Stream(io.TextIOWrapper):
    """A text stream that encodes as strict UTF-8, like Lambda's stdout (a StringIO would
    accept text that the real stream refuses, such as a lone surrogate)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)

    def getvalue(self) -> str:
        self.flush()
        buffer = self.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode("utf-8")


@contextmanager
def captured_powertools_log(logger: Any) -> Iterator[Utf8Stream]:
    """Everything a Powertools Logger writes, in a buffer (one JSON object per line)."""
    buffer = Utf8Stream()
    handler = logger.registered_handler
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def log_records(buffer: io.StringIO | Utf8Stream) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
