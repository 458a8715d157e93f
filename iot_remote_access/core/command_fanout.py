"""Fleet fan-out: one command to a thing group or a list of things, at a rollout rate.

Each target gets its own execution (id derived from the fan-out id and the thing, so
a wave dispatched twice sends nothing twice). Targets go out in waves of
:func:`wave_plan`; before each wave the dispatcher asks :func:`should_abort` whether
more than the allowed share of the completed targets failed, and stops if so.

Standard library only: the broker, the dispatcher, the CLI and the benchmark use it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from iot_remote_access.core import strict_json
from iot_remote_access.core.argument_schema import shown
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    CommandSpec,
    check_command_fields,
    check_thing_for,
    client_token,
    format_time,
    validate_thing,
)
from iot_remote_access.core.topics import THING_NAME_RULE

FANOUT_FIELDS = (
    "things",
    "thingGroup",
    "name",
    "arguments",
    "reason",
    "purpose",
    "clientToken",
    "ratePerSecond",
    "abortPercent",
)
#: A listed fan-out names at most this many things (larger fleets: a thing group).
MAX_LISTED_THINGS = 250
THING_GROUP_RULE = "[a-zA-Z0-9:_-]{1,128}"
_THING_GROUP_RE = re.compile(rf"\A{THING_GROUP_RULE}\Z")
DEFAULT_RATE_PER_SECOND = 10
MAX_RATE_PER_SECOND = 100
DEFAULT_ABORT_PERCENT = 10
#: No abort decision before this many targets have completed (one early failure of
#: three would otherwise stop a 10,000-thing rollout at 33 %).
MIN_COMPLETED_FOR_ABORT = 10
#: A wave is what goes out per dispatcher run: ``WAVE_SECONDS`` worth of the rate,
#: at most one ListThingsInThingGroup page (250) and at least one thing.
WAVE_SECONDS = 10
MAX_WAVE = 250
#: SQS's longest message delay.
MAX_DELAY_SECONDS = 900
RUNNING, DISPATCHED, ABORTED = "running", "dispatched", "aborted"
_FANOUT_NAMESPACE = uuid.UUID("6d1c8f3e-2b4a-4c5d-8e9f-0a1b2c3d4e5f")


@dataclass(frozen=True)
class FanoutRequest:
    """A checked fan-out: the command for every target, the targets, rate and threshold."""

    spec: CommandSpec
    arguments: dict[str, Any]
    reason: str
    purpose: str
    things: tuple[str, ...] = ()
    thing_group: str | None = None
    rate_per_second: int = DEFAULT_RATE_PER_SECOND
    abort_percent: int = DEFAULT_ABORT_PERCENT
    client_token: str | None = None


def parse_fanout_request(
    raw: object,
    catalogue: CommandCatalogue,
    *,
    requester: str,
    thing_name_pattern: str = THING_NAME_RULE,
) -> FanoutRequest:
    """Check a fan-out request; CommandRuleError (400/403/404) naming the field."""
    if not isinstance(raw, dict):
        raise CommandRuleError(
            "body", f"{shown(raw)} is not an object; allowed: {', '.join(FANOUT_FIELDS)}"
        )
    unknown = sorted(set(raw) - set(FANOUT_FIELDS))
    if unknown:
        raise CommandRuleError(
            shown(unknown[0], 40).strip("'"),
            f"is not a fan-out field; allowed: {', '.join(FANOUT_FIELDS)}",
        )
    things, group = _targets(raw, thing_name_pattern)
    spec, arguments, reason, purpose = check_command_fields(raw, catalogue, requester=requester)
    for thing in things:
        check_thing_for(spec, thing)
    return FanoutRequest(
        spec=spec,
        arguments=arguments,
        reason=reason,
        purpose=purpose,
        things=things,
        thing_group=group,
        rate_per_second=_whole(
            raw, "ratePerSecond", DEFAULT_RATE_PER_SECOND, 1, MAX_RATE_PER_SECOND
        ),
        abort_percent=_whole(raw, "abortPercent", DEFAULT_ABORT_PERCENT, 0, 100),
        client_token=client_token(raw),
    )


def _targets(raw: Mapping[str, Any], pattern: str) -> tuple[tuple[str, ...], str | None]:
    things, group = raw.get("things"), raw.get("thingGroup")
    if (things is None) == (group is None):
        raise CommandRuleError("things", "allowed: exactly one of things (a list) or thingGroup")
    if group is not None:
        if not isinstance(group, str) or not _THING_GROUP_RE.match(group):
            raise CommandRuleError(
                "thingGroup",
                f"{shown(group)} is not a thing group name; allowed: {THING_GROUP_RULE}",
            )
        return (), group
    if not isinstance(things, list) or not 1 <= len(things) <= MAX_LISTED_THINGS:
        raise CommandRuleError(
            "things",
            f"{shown(things)}; allowed: a list of 1 to {MAX_LISTED_THINGS} thing names "
            "(a thing group for more)",
        )
    names = tuple(validate_thing(thing, pattern=pattern) for thing in things)
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise CommandRuleError("things", f"{duplicate!r} appears twice; allowed: unique names")
    return names, None


def _whole(raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CommandRuleError(key, f"{shown(value)}; allowed: a whole number from {low} to {high}")
    return value


def wave_plan(rate_per_second: int) -> tuple[int, int]:
    """(things per wave, seconds between waves) for a rollout rate.

    A wave is ``WAVE_SECONDS`` of the rate (capped at ``MAX_WAVE``); the delay is what
    keeps the average at the rate: ``ceil(size / rate)`` seconds.
    """
    size = max(1, min(MAX_WAVE, rate_per_second * WAVE_SECONDS))
    return size, min(MAX_DELAY_SECONDS, math.ceil(size / rate_per_second))


def should_abort(*, succeeded: int, failed: int, abort_percent: int) -> bool:
    """More than ``abort_percent`` % of the completed targets failed (after a minimum)."""
    completed = succeeded + failed
    return completed >= MIN_COMPLETED_FOR_ABORT and failed * 100 > abort_percent * completed


def target_id(fanout_id: str, thing: str) -> str:
    """The command id of one target: the same for every dispatch of the same wave."""
    return str(uuid.uuid5(_FANOUT_NAMESPACE, f"{fanout_id}\n{thing}"))


def fanout_id_for(requester: str, token: str) -> str:
    """A retried fan-out (same requester and client token) names the same fan-out."""
    return str(uuid.uuid5(_FANOUT_NAMESPACE, f"client-token\n{requester}\n{token}"))


def fanout_item(
    fanout_id: str, request: FanoutRequest, *, requester: str, now: datetime, ttl: int
) -> dict[str, Any]:
    """The fan-out record (in the executions table, ``kind: fanout``)."""
    item: dict[str, Any] = {
        "id": fanout_id,
        "kind": "fanout",
        "command": request.spec.name,
        # As canonical JSON text: DynamoDB takes no floats, and the dispatcher needs the
        # exact values (the table is encrypted; the audit records hold only a digest).
        "arguments": strict_json.dumps(dict(request.arguments)),
        "requester": requester,
        "reason": request.reason,
        "purpose": request.purpose,
        "status": RUNNING,
        "ratePerSecond": request.rate_per_second,
        "abortPercent": request.abort_percent,
        "issuedAt": format_time(now),
        "dispatched": 0,
        "refused": 0,
        "succeeded": 0,
        "failed": 0,
        "completed": 0,
        "ttl": ttl,
    }
    if request.thing_group is not None:
        item["thingGroup"] = request.thing_group
    else:
        item["things"] = list(request.things)
        item["total"] = len(request.things)
    return item


PROGRESS_FIELDS = (
    "id",
    "command",
    "status",
    "thingGroup",
    "total",
    "dispatched",
    "refused",
    "succeeded",
    "failed",
    "completed",
    "ratePerSecond",
    "abortPercent",
    "issuedAt",
    "finishedAt",
    "error",
)


def progress(item: Mapping[str, Any]) -> dict[str, Any]:
    """What ``GET /fanouts/<id>`` shows (no arguments, no target list)."""
    return {key: _plain(item[key]) for key in PROGRESS_FIELDS if key in item}


def _plain(value: object) -> object:
    # DynamoDB numbers arrive as Decimal: whole numbers here.
    return int(value) if isinstance(value, Decimal) else value


def finished(state: Mapping[str, Any]) -> bool:
    """Nothing more will change: aborted, or every dispatched target has completed."""
    if state.get("status") == ABORTED:
        return True
    completed, dispatched = int(state.get("completed", 0)), int(state.get("dispatched", 0))
    return state.get("status") == DISPATCHED and completed >= dispatched


class FanoutBackend(Protocol):
    """A cloud that supports fleet fan-out (AWS). The CLI checks for it."""

    def fanout(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start a fan-out; returns its progress record (with ``id``)."""

    def fanout_status(self, fanout_id: str) -> dict[str, Any]:
        """The fan-out's progress record."""
