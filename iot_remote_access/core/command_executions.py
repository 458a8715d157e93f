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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from iot_remote_access.core.argument_schema import shown
from iot_remote_access.core.commands import (
    CommandMessage,
    CommandRuleError,
    ResponseMessage,
    SendRequest,
    arguments_digest,
    format_time,
    validate_thing,
)
from iot_remote_access.core.topics import THING_NAME_RULE

PENDING = "pending"
TIMED_OUT = "timed-out"
STATUSES = (PENDING, "succeeded", "failed", "rejected", TIMED_OUT)
#: Statuses after which a record never changes again.
FINAL_STATUSES = tuple(status for status in STATUSES if status != PENDING)
#: How long records stay after they expire (DynamoDB TTL), for ``command get`` and audits.
DEFAULT_RETENTION = timedelta(days=90)

#: Secondary indexes of the records' table (AWS). ``byThing``: ``command list --thing``,
#: newest first. ``byMonth``: ``command list`` across the fleet, one partition per month
#: of issue (records live at most ~4 months, so a listing reads at most 5 partitions).
#: ``byStatus``: the sweep's query for pending records past their expiry.
BY_THING_INDEX = "byThing"
BY_MONTH_INDEX = "byMonth"
BY_STATUS_INDEX = "byStatus"
#: index -> (partition key, sort key); all string attributes. The construct and the
#: tests' tables are built from this one table.
INDEX_KEYS = {
    BY_THING_INDEX: ("thing", "issuedAt"),
    BY_MONTH_INDEX: ("issuedMonth", "issuedAt"),
    BY_STATUS_INDEX: ("status", "expiresAt"),
}
#: What the sweep's index carries besides the keys (for its audit records).
BY_STATUS_ATTRIBUTES = ("thing", "command", "requester", "fanout")
#: What one ``list`` answers at most, and how many records it reads at most to find them.
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20
MAX_LIST_SCANNED = 1000
#: The fields a reader (``command get|list``) sees; arguments are never stored.
SHOWN_FIELDS = (
    "id",
    "thing",
    "command",
    "requester",
    "reason",
    "purpose",
    "issuedAt",
    "expiresAt",
    "completedAt",
    "error",
    "fanout",
)


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
        "issuedMonth": format_time(command.issued_at)[:7],
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
    if item.get("status") == TIMED_OUT:
        return "late"  # the sweep has written the timeout
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


def shown_record(item: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """A record as ``command get|list`` show it: no digest or TTL, the effective status."""
    shown = {key: item[key] for key in SHOWN_FIELDS if key in item}
    shown["status"] = effective_status(item, now=now)
    return shown


def timeout_values(*, now: datetime) -> dict[str, Any]:
    """The attributes the sweep writes into a pending record past its expiry."""
    return {"status": TIMED_OUT, "completedAt": format_time(now), "error": "no response in time"}


def months_back(now: datetime, count: int) -> list[str]:
    """``count`` months as ``YYYY-MM``, newest first, starting with ``now``'s month."""
    year, month = now.year, now.month
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return months


LIST_PARAMETERS = ("thing", "status", "limit")


@dataclass(frozen=True)
class ListQuery:
    """A checked ``command list``: optional thing and status, and how many records."""

    thing: str | None = None
    status: str | None = None
    limit: int = DEFAULT_LIST_LIMIT

    def matches(self, item: Mapping[str, Any], *, now: datetime) -> bool:
        return self.status is None or effective_status(item, now=now) == self.status

    def parameters(self) -> dict[str, str]:
        """As a query string's parameters (what the CLI sends)."""
        values = {"thing": self.thing, "status": self.status, "limit": str(self.limit)}
        return {key: value for key, value in values.items() if value is not None}


def parse_list_query(
    parameters: Mapping[str, str] | None, *, thing_name_pattern: str = THING_NAME_RULE
) -> ListQuery:
    """Check a listing's parameters; CommandRuleError (400) naming the parameter."""
    parameters = parameters or {}
    unknown = sorted(set(parameters) - set(LIST_PARAMETERS))
    if unknown:
        raise CommandRuleError(
            shown(unknown[0], 40).strip("'"),
            f"is not a list parameter; allowed: {', '.join(LIST_PARAMETERS)}",
        )
    thing = parameters.get("thing")
    status = parameters.get("status")
    if status is not None and status not in STATUSES:
        raise CommandRuleError("status", f"{shown(status)}; allowed: {', '.join(STATUSES)}")
    return ListQuery(
        thing=None if thing is None else validate_thing(thing, pattern=thing_name_pattern),
        status=status,
        limit=validate_limit(parameters.get("limit", str(DEFAULT_LIST_LIMIT))),
    )


def validate_limit(value: object) -> int:
    allowed = f"allowed: a whole number from 1 to {MAX_LIST_LIMIT}"
    text = str(value)
    if not text.isdigit() or len(text) > 4 or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise CommandRuleError("limit", f"{shown(value)}; {allowed}")
    return int(text)
