"""The GCP rotation planner: the daily plan and the hourly dispatch, from the Firestore inventory.

Exactly the AWS planner's decisions (``core.rotation_plan.plan_rotations`` on the same
records, the same settings, the same budget), on GCP's parts:

- ``plan`` (daily CronJob): one query per day of the due window on ``expiryDay``, never a
  read of the whole fleet; the slots of the next 24 hours are written (``slotHour``);
  attempts past their timeout are failed (a pending certificate never confirmed is
  revoked); old certificates whose revocation failed after a confirmation are revoked.
- ``dispatch`` (hourly CronJob): the devices of this hour's slot move SCHEDULED ->
  REQUESTED (the attempt counted first) and are told to rotate: the rotate command on
  the commands topic, which the bridge relays to ``cmd/{thing}/commands``, where
  ``device/rotation.py`` listens. A command that cannot be published is undone
  (back to SCHEDULED), so the next run tells the device again.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.core.inventory_item import iso, slot_key
from iot_remote_access.core.rotation_messages import rotate_command
from iot_remote_access.core.rotation_plan import (
    HOUR,
    IN_FLIGHT,
    RotationPlan,
    RotationSettings,
    RotationState,
    ceil_hour,
    floor_hour,
    plan_rotations,
)
from iot_remote_access.core.topics import TopicModel
from iot_remote_access.pubsub.rotation_inventory import (
    ATTEMPT_FIELDS,
    FirestoreInventory,
    Item,
    StateConflict,
    cleared,
)
from iot_remote_access.pubsub.rotation_protocol import RotationProtocol

#: Days back the expiry query looks, to keep reporting certificates that expired unrotated
#: (the AWS planner's window too).
EXPIRED_LOOKBACK_DAYS = 30
SCHEDULABLE = (RotationState.IDLE, RotationState.FAILED, RotationState.SCHEDULED)
PUBLISH_TIMEOUT_SECONDS = 30.0


@dataclass
class RunReport:
    """What one run did (printed as JSON by the CronJob, one line)."""

    run: str
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, **self.counts, "failed": self.failed[:50]}


def due_window(now: datetime, lead_days: int) -> list[Any]:
    today = now.astimezone(UTC).date()
    return [today + timedelta(days=i) for i in range(-EXPIRED_LOOKBACK_DAYS, lead_days + 1)]


class GcpRotationPlanner:
    """Plans and dispatches rotations for one fleet."""

    def __init__(
        self,
        *,
        inventory: FirestoreInventory,
        protocol: RotationProtocol,
        publisher: Any,
        commands_topic: str,
        settings: RotationSettings,
        topics: TopicModel | None = None,
    ) -> None:
        self.inventory = inventory
        self.protocol = protocol
        self.publisher = publisher
        self.commands_topic = commands_topic
        self.settings = settings
        self.topics = topics or TopicModel()

    def compute(self, now: datetime) -> RotationPlan:
        records = self.inventory.expiring_on(due_window(now, self.settings.lead_days))
        return plan_rotations(records, now, self.settings)

    # -- daily ------------------------------------------------------------------------

    def plan(self, now: datetime) -> RunReport:
        plan = self.compute(now)
        report = RunReport("plan")
        for thing in plan.timed_out:
            if not self.fail_attempt(thing, "attempt timed out"):
                report.failed.append(thing)
        scheduled = 0
        for slot in plan.starting_before(ceil_hour(now) + 24 * HOUR):
            # StateConflict: the device moved on (started, confirmed) since the plan.
            with contextlib.suppress(StateConflict):
                self.inventory.transition(
                    slot.thing, SCHEDULABLE, {"rotationState": "SCHEDULED", **_slot(slot.hour)}
                )
                scheduled += 1
        retired = 0
        for item in self.inventory.revoke_pending():
            if self.protocol.retire_previous(item):
                retired += 1
            else:
                report.failed.append(item["thing"])
        report.counts = {
            "pending": plan.pending,
            "inFlight": plan.in_flight,
            "scheduledNext24h": scheduled,
            "timedOut": len(plan.timed_out),
            "exhausted": len(plan.exhausted),
            "critical": len(plan.critical),
            "expired": len(plan.expired),
            "late": len(plan.late),
            "retired": retired,
            **{f"expiringWithin{d}Days": n for d, n in plan.expiring_within.items()},
        }
        return report

    def fail_attempt(self, thing: str, reason: str) -> bool:
        """An in-flight attempt timed out: revoke its never-confirmed certificate, mark FAILED.

        The old certificate is untouched, so the device keeps connecting with it.
        """
        item = self.inventory.get(thing)
        if item is None or item.get("rotationState") not in IN_FLIGHT:
            return True
        pending = item.get("pendingCertificateId")
        if pending:
            try:
                self.protocol.issuer.revoke(pending)
            except Exception:  # the next daily run tries again
                return False
        with contextlib.suppress(StateConflict):  # the device confirmed meanwhile
            self.inventory.transition(
                thing,
                [RotationState(item["rotationState"])],
                {
                    "rotationState": RotationState.FAILED.value,
                    "lastError": reason[:200],
                    **cleared(*ATTEMPT_FIELDS),
                },
            )
        return True

    # -- hourly -----------------------------------------------------------------------

    def dispatch(self, now: datetime) -> RunReport:
        hour = floor_hour(now)
        report = RunReport("dispatch")
        told = 0
        for thing in self.inventory.scheduled_in(hour):
            try:
                started = self._start(thing, hour, now)
            except StateConflict:
                continue  # already started, or no longer scheduled
            except Exception:
                report.failed.append(thing)
                continue
            told += started
        report.counts = {"requested": told, "hour": int(hour.timestamp())}
        return report

    def _start(self, thing: str, hour: datetime, now: datetime) -> int:
        key = slot_key(hour)

        def start(item: Item) -> dict[str, Any]:
            if item.get("slotHour") != key:
                raise StateConflict(thing)
            return {
                "rotationState": RotationState.REQUESTED.value,
                "attempts": int(item.get("attempts", 0)) + 1,
                "lastAttemptAt": iso(now),
                **cleared("slotHour"),
            }

        item = self.inventory.transition(thing, [RotationState.SCHEDULED], start)
        command = rotate_command(
            self.topics,
            thing,
            attempt=int(item["attempts"]),
            current_not_after=item.get("notAfter"),
        )
        try:
            self.publisher.publish(
                self.commands_topic, json.dumps(command).encode(), thing=thing
            ).result(timeout=PUBLISH_TIMEOUT_SECONDS)
        except Exception:
            self._unstart(thing, key)
            raise
        return 1

    def _unstart(self, thing: str, key: str) -> None:
        """Undo ``_start`` when the device could not be told (the next run tells it)."""

        def undo(item: Item) -> dict[str, Any]:
            return {
                "rotationState": RotationState.SCHEDULED.value,
                "slotHour": key,
                "attempts": max(0, int(item.get("attempts", 1)) - 1),
            }

        with contextlib.suppress(StateConflict):
            self.inventory.transition(thing, [RotationState.REQUESTED], undo)


def _slot(hour: datetime) -> dict[str, str]:
    return {"slotHour": slot_key(hour)}
