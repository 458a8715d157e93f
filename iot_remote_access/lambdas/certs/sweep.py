"""The fleet side of a rotation: the daily plan, the hourly start, and the work items.

- ``plan`` (daily): one query per day of the due window on ``byExpiryDay``, never a
  list of the fleet; ``core.rotation_plan`` decides the slots; the slots of the
  next 24 hours are written (``bySlot``), timed-out attempts are failed and old
  certificates past their grace period are retired.
- ``dispatch`` (hourly): one query of ``bySlot`` for the hour; each device is told
  to rotate on its commands topic.

Both produce *work items*. Up to ``inline_limit`` are done in the invocation;
more are sent to SQS (10 messages per call, 25 items per message) and done by the
worker function, so no invocation runs one long loop over a big fleet.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from iot_remote_access.core.inventory_item import slot_key
from iot_remote_access.core.rotation_messages import rotate_command
from iot_remote_access.core.rotation_plan import (
    HOUR,
    RotationState,
    ceil_hour,
    floor_hour,
    plan_rotations,
)
from iot_remote_access.core.topics import render_topic
from iot_remote_access.lambdas.certs.config import RotationConfig
from iot_remote_access.lambdas.certs.inventory import Inventory, StateConflict
from iot_remote_access.lambdas.certs.issuance import Outcome, RetryableError, Rotation

ITEMS_PER_MESSAGE = 25
MESSAGES_PER_BATCH = 10
#: Days back the retirement sweep looks, so a missed daily run catches up.
RETIRE_LOOKBACK_DAYS = 7
#: Days back the expiry query looks, to keep reporting certificates that expired unrotated.
EXPIRED_LOOKBACK_DAYS = 30
SCHEDULABLE = (RotationState.IDLE, RotationState.FAILED, RotationState.SCHEDULED)


@dataclass(frozen=True)
class WorkItem:
    kind: str  # "prepare" (fail a timed-out attempt and/or schedule), "start", "retire"
    thing: str
    hour: str | None = None  # slot hour, "YYYY-MM-DDTHH"
    fail: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "thing": self.thing, "hour": self.hour, "fail": self.fail}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WorkItem:
        kind = raw.get("kind")
        if kind not in ("prepare", "start", "retire") or not isinstance(raw.get("thing"), str):
            raise ValueError(f"work item: {json.dumps(raw)[:200]} is not a work item")
        return cls(kind, raw["thing"], raw.get("hour"), bool(raw.get("fail")))


def _hour(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=UTC)


def _chunks(items: list[WorkItem], size: int) -> Iterator[list[WorkItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Sweep:
    def __init__(
        self,
        config: RotationConfig,
        inventory: Inventory,
        rotation: Rotation,
        sqs: Any = None,
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.rotation = rotation
        self.sqs = sqs
        self.sqs_calls = 0

    # -- daily ---------------------------------------------------------------

    def plan(self, now: datetime) -> Outcome:
        today = now.astimezone(UTC).date()
        # From 30 days back: an expired certificate stays in the critical count (and
        # its alarm keeps firing) instead of silently leaving the window.
        window = [
            today + timedelta(days=i)
            for i in range(-EXPIRED_LOOKBACK_DAYS, self.config.plan.lead_days + 1)
        ]
        plan = plan_rotations(self.inventory.expiring_on(window), now, self.config.plan)
        horizon = ceil_hour(now) + 24 * HOUR
        timed_out = set(plan.timed_out)
        items = [
            WorkItem("prepare", slot.thing, slot_key(slot.hour), slot.thing in timed_out)
            for slot in plan.starting_before(horizon)
        ]
        scheduled = {item.thing for item in items}
        items += [WorkItem("prepare", thing, None, True) for thing in timed_out - scheduled]
        lookback = [today - timedelta(days=i) for i in range(RETIRE_LOOKBACK_DAYS, -1, -1)]
        items += [WorkItem("retire", item["thing"]) for item in self.inventory.revoke_due(lookback)]
        done, queued, failed = self._run(items, now)
        metrics = {
            **{f"ExpiringWithin{d}Days": n for d, n in plan.expiring_within.items()},
            "RotationsPending": plan.pending,
            "RotationsInFlight": plan.in_flight,
            "RotationsTimedOut": len(plan.timed_out),
            "RotationsExhausted": len(plan.exhausted),
            "CriticalWithoutRotation": len(plan.critical),
            "CertificatesExpired": len(plan.expired),
            "LateRotationSlots": len(plan.late),
            "WorkItemsFailed": failed,
        }
        body = {
            "status": "planned",
            "due": plan.pending + plan.in_flight,
            "scheduledNext24h": len(scheduled),
            "done": done,
            "queued": queued,
            "failed": failed,
            "exhausted": list(plan.exhausted[:50]),
            "critical": list(plan.critical[:50]),
        }
        return Outcome(200 if not failed else 207, body, metrics)

    # -- hourly --------------------------------------------------------------

    def dispatch(self, now: datetime) -> Outcome:
        hour = floor_hour(now)
        items = [WorkItem("start", t, slot_key(hour)) for t in self.inventory.scheduled_in(hour)]
        done, queued, failed = self._run(items, now)
        return Outcome(
            200 if not failed else 207,
            {
                "status": "dispatched",
                "hour": slot_key(hour),
                "done": done,
                "queued": queued,
                "failed": failed,
            },
            {"RotationsRequested": done, "WorkItemsFailed": failed},
        )

    # -- work items ----------------------------------------------------------

    def _run(self, items: list[WorkItem], now: datetime) -> tuple[int, int, int]:
        if len(items) > self.config.inline_limit and self.sqs is not None and self.config.queue_url:
            self.enqueue(items)
            return 0, len(items), 0
        done = failed = 0
        for item in items:
            try:
                self.apply(item, now)
                done += 1
            except (RetryableError, ClientError, BotoCoreError):
                failed += 1  # left as it was; tomorrow's plan or the next hour picks it up
        return done, 0, failed

    def enqueue(self, items: list[WorkItem]) -> None:
        messages = [
            {"Id": str(n), "MessageBody": json.dumps([i.to_json() for i in chunk])}
            for n, chunk in enumerate(_chunks(items, ITEMS_PER_MESSAGE))
        ]
        for start in range(0, len(messages), MESSAGES_PER_BATCH):
            batch = messages[start : start + MESSAGES_PER_BATCH]
            self.sqs_calls += 1
            response = self.sqs.send_message_batch(QueueUrl=self.config.queue_url, Entries=batch)
            if response.get("Failed"):
                raise RetryableError(f"SQS refused {len(response['Failed'])} messages")

    def apply_all(self, items: Iterable[WorkItem], now: datetime) -> None:
        """Do every item; then raise if any failed (each item is idempotent, so the
        whole message can be retried)."""
        failures = []
        for item in items:
            try:
                self.apply(item, now)
            except (RetryableError, ClientError, BotoCoreError) as error:
                failures.append(f"{item.kind} {item.thing}: {type(error).__name__}")
        if failures:
            raise RetryableError(f"{len(failures)} work items failed: {'; '.join(failures[:5])}")

    def apply(self, item: WorkItem, now: datetime) -> None:
        """Do one work item; raise RetryableError to have it retried."""
        if item.kind == "prepare":
            if item.fail and not self.rotation.fail_attempt(item.thing, "attempt timed out"):
                raise RetryableError(f"{item.thing}: pending certificate could not be removed")
            if item.hour:
                # StateConflict: the device moved on (confirmed, started) since the plan.
                with contextlib.suppress(StateConflict):
                    self.inventory.schedule(item.thing, _hour(item.hour), expected=SCHEDULABLE)
        elif item.kind == "start":
            self._start(item, now)
        elif item.kind == "retire":
            record = self.inventory.get(item.thing)
            if record is not None and not self.rotation.retire_previous(record):
                raise RetryableError(f"{item.thing}: old certificate could not be removed yet")

    def _start(self, item: WorkItem, now: datetime) -> None:
        assert item.hour is not None
        hour = _hour(item.hour)
        try:
            record = self.inventory.start(item.thing, hour, now)
        except StateConflict:
            return  # already started, or no longer scheduled
        topics = self.config.topics
        command = rotate_command(
            topics,
            item.thing,
            attempt=int(record.get("attempts", 1)),
            current_not_after=record.get("notAfter"),
        )
        try:
            self.rotation.clients.iot_data.publish(
                topic=render_topic(topics.commands, item.thing),
                qos=1,
                payload=json.dumps(command).encode(),
            )
        except (ClientError, BotoCoreError) as error:
            self.inventory.unstart(item.thing, hour)
            raise RetryableError(f"{item.thing}: could not send the rotate command") from error


def work_items(bodies: Iterable[str]) -> Iterator[WorkItem]:
    for body in bodies:
        for raw in json.loads(body):
            yield WorkItem.from_json(raw)
