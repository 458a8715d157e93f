"""Execution records of remote commands: what is stored, and how a response may change it.

One record per command sent (DynamoDB on AWS, keyed by the command id). The broker
writes it ``pending`` before publishing; a response completes it only when it comes
from the thing the command was sent to, while the record is still pending and
before it expires. Anything else is refused and changes nothing, so no device can
complete, or spoil, another thing's execution. A pending record past its expiry
reads as ``timed-out`` (:func:`effective_status`).

Standard library only: the Lambda functions and the CLI import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from iot_remote_access.core.commands import (
    CommandMessage,
    ResponseMessage,
    SendRequest,
    arguments_digest,
    format_time,
)

PENDING = "pending"
TIMED_OUT = "timed-out"
STATUSES = (PENDING, "succeeded", "failed", "rejected", TIMED_OUT)
#: How long records stay after they expire (DynamoDB TTL), for ``command get`` and audits.
DEFAULT_RETENTION = timedelta(days=90)


def execution_item(
    request: SendRequest,
    command: CommandMessage,
    *,
    requester: str,
    retention: timedelta = DEFAULT_RETENTION,
) -> dict[str, Any]:
    """The record written before the command is published (arguments as a digest only)."""
    return {
        "id": command.id,
        "thing": command.thing,
        "command": command.name,
        "argumentsDigest": arguments_digest(command.arguments),
        "requester": requester,
        "reason": request.reason,
        "purpose": request.purpose,
        "status": PENDING,
        "issuedAt": format_time(command.issued_at),
        "expiresAt": format_time(command.expires_at),
        "ttl": int((command.expires_at + retention).timestamp()),
    }


def completion(response: ResponseMessage, *, now: datetime) -> dict[str, Any]:
    """The attributes a valid, timely response sets."""
    values: dict[str, Any] = {"status": response.status, "completedAt": format_time(now)}
    if response.error is not None:
        values["error"] = response.error
    return values


def refusal_reason(item: Mapping[str, Any] | None, *, thing: str, now: datetime) -> str:
    """Why a response for ``item`` (None: no such record) may not complete it.

    Returns "" when it may. The order matters: a response from another thing is
    refused as such even when the record is also expired or completed.
    """
    if item is None:
        return "unknown-id"
    if item.get("thing") != thing:
        return "wrong-thing"
    if item.get("status") != PENDING:
        return "already-completed"
    if format_time(now) > str(item.get("expiresAt", "")):
        return "late"
    return ""


def effective_status(item: Mapping[str, Any], *, now: datetime) -> str:
    """The status to show: a pending record past its expiry is ``timed-out``."""
    status = str(item.get("status", PENDING))
    if status == PENDING and format_time(now) > str(item.get("expiresAt", "")):
        return TIMED_OUT
    return status
