"""Secure Tunneling CloudTrail events as EventBridge delivers them, for the handler tests.

Source of the shape (built from AWS's documentation; no event recorded from a
real account is used):

* EventBridge envelope of CloudTrail events (``detail-type: AWS API Call via
  CloudTrail``, the CloudTrail record in ``detail``):
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
* Secure Tunneling's ``source: aws.iotsecuredtunneling`` and
  ``eventSource: iotsecuredtunneling.amazonaws.com``:
  https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-iotsecuredtunneling.html
* The CloudTrail record fields (eventVersion 1.08: userIdentity, eventTime,
  requestParameters, responseElements, eventID, eventType, managementEvent, ...):
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
* OpenTunnel's request (``destinationConfig.thingName``, ``timeoutConfig``) and
  response (``tunnelId``, ``tunnelArn``, and the two access tokens), CloseTunnel's
  request (``tunnelId``, ``delete``) and DescribeTunnel's response:
  https://docs.aws.amazon.com/iot/latest/apireference/API_Operations_AWS_IoT_Secure_Tunneling.html

CloudTrail's record of OpenTunnel's response is not documented field by field;
``with_tokens=True`` puts the access tokens in it, the worst case, for the tests
that prove no token reaches a log, a metric or the state table.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-1"
#: Access tokens as OpenTunnel returns them (opaque strings); never to be logged.
SOURCE_TOKEN = (
    "AQGAAXiVzSmRL1VTRlCtTa4xIVPCCoCQ0K0GZGNYgAbRFTnDAAMAAQACADBfc291cmNlX3Rva2VuX3NlY3JldA"
)
DESTINATION_TOKEN = (
    "AQGAAXiVzSmRL1VTRlCtTa4xIVPCCoCQ0K0GZGNYgAbRFTnDAAMAAQACAEBfZGVzdGluYXRpb25fc2VjcmV0"
)


def iso(at: datetime) -> str:
    """CloudTrail's eventTime format: UTC, whole seconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_tunnel_id() -> str:
    return str(uuid.uuid4())


def _envelope(detail: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iotsecuredtunneling",
        "account": ACCOUNT,
        "time": iso(at),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


def _record(
    event_name: str,
    at: datetime,
    request: dict[str, Any],
    response: dict[str, Any] | None,
    role: str = "FieldEngineer",
    session: str = "field-engineer",
) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": f"AROAEXAMPLEID:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
            "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLEKEYID",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEID",
                    "arn": role_arn(role),
                    "accountId": ACCOUNT,
                    "userName": role,
                },
                "attributes": {
                    "creationDate": iso(at - timedelta(minutes=30)),
                    "mfaAuthenticated": "true",
                },
            },
        },
        "eventTime": iso(at),
        "eventSource": "iotsecuredtunneling.amazonaws.com",
        "eventName": event_name,
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.17.0 md/Botocore#1.35.0 command/iotsecuretunneling.open-tunnel",
        "requestParameters": request,
        "responseElements": response,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": f"api.tunneling.iot.{REGION}.amazonaws.com",
        },
    }


def open_tunnel(
    at: datetime,
    *,
    thing: str | None = "sensor-000001",
    tunnel_id: str | None = None,
    lifetime_minutes: int | None = None,
    with_tokens: bool = False,
) -> dict[str, Any]:
    """An OpenTunnel event; ``thing=None`` opens a tunnel without destinationConfig."""
    tunnel_id = tunnel_id or new_tunnel_id()
    request: dict[str, Any] = {"description": "field debug session"}
    if thing is not None:
        request["destinationConfig"] = {"thingName": thing, "services": ["SSH"]}
    if lifetime_minutes is not None:
        request["timeoutConfig"] = {"maxLifetimeTimeoutMinutes": lifetime_minutes}
    response: dict[str, Any] = {
        "tunnelId": tunnel_id,
        "tunnelArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/{tunnel_id}",
    }
    if with_tokens:
        response["sourceAccessToken"] = SOURCE_TOKEN
        response["destinationAccessToken"] = DESTINATION_TOKEN
    return _envelope(_record("OpenTunnel", at, request, response), at)


def role_arn(role: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{role}"


def close_tunnel(
    at: datetime, tunnel_id: str, *, role: str = "FieldEngineer", session: str = "field-engineer"
) -> dict[str, Any]:
    """A CloseTunnel event: only the tunnel id, no thing (that comes from state). ``role``/
    ``session``: the caller (a Lambda function's session is named after the function)."""
    request = {"tunnelId": tunnel_id, "delete": False}
    return _envelope(_record("CloseTunnel", at, request, None, role, session), at)


def tunnel_id_of(event: dict[str, Any]) -> str:
    detail = event["detail"]
    if detail["eventName"] == "OpenTunnel":
        return str(detail["responseElements"]["tunnelId"])
    return str(detail["requestParameters"]["tunnelId"])


def scheduled(at: datetime) -> dict[str, Any]:
    """EventBridge's scheduled event, as the 5-minute sweep rule sends it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": iso(at),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/TunnelAlarmsSweep"],
        "detail": {},
    }


def ec2_instance_connect_open_tunnel(at: datetime) -> dict[str, Any]:
    """EC2 Instance Connect Endpoint's own ``OpenTunnel`` (documented in the EC2 guide):
    same event name, other service; it must not be counted as a Secure Tunneling open."""
    record = _record(
        "OpenTunnel",
        at,
        {
            "instanceConnectEndpointId": "eici-0123456789EXAMPLE",
            "maxTunnelDuration": "3600",
            "remotePort": "22",
            "privateIpAddress": "10.0.1.1",
        },
        None,
    )
    record["eventSource"] = "ec2-instance-connect.amazonaws.com"
    event = _envelope(record, at)
    event["source"] = "aws.ec2-instance-connect"
    return event


def describe_tunnel_response(
    tunnel_id: str,
    *,
    thing: str | None,
    created_at: datetime,
    lifetime_minutes: int = 720,
    status: str = "CLOSED",
) -> dict[str, Any]:
    """DescribeTunnel's response shape (boto3 ``iotsecuretunneling.describe_tunnel``)."""
    tunnel: dict[str, Any] = {
        "tunnelId": tunnel_id,
        "tunnelArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/{tunnel_id}",
        "status": status,
        "sourceConnectionState": {"status": "DISCONNECTED", "lastUpdatedAt": created_at},
        "destinationConnectionState": {"status": "DISCONNECTED", "lastUpdatedAt": created_at},
        "description": "field debug session",
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": lifetime_minutes},
        "tags": [{"key": "purpose", "value": "field-debug"}],
        "createdAt": created_at,
        "lastUpdatedAt": created_at,
    }
    if thing is not None:
        tunnel["destinationConfig"] = {"thingName": thing, "services": ["SSH"]}
    return {"tunnel": tunnel}
