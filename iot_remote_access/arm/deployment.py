"""Plan and deploy a tree of Azure constructs: read live, diff field by field, apply in order.

Resources are handled in construct-tree order (a stack adds them in
dependency order). Deploy is idempotent: a resource without changes gets no
write, so a second deploy sends only reads. After each write the resource is
read again and must match; later resources see its outputs (a hub's host name,
a DPS identity). The first failure stops the deploy: nothing after it is
touched, and a re-run picks up where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from azure.core.exceptions import HttpResponseError

from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.diff import ABSENT, FieldChange
from iot_remote_access.arm.errors import ArmInputError, ArmOperationError
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core.tree import Construct


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    NONE = "no changes"


@dataclass
class ResourcePlan:
    resource: ArmResource
    live: dict[str, Any] | None
    changes: list[FieldChange]
    notes: list[str] = field(default_factory=list)

    @property
    def action(self) -> Action:
        if not self.changes:
            return Action.NONE
        return Action.UPDATE if self.resource.exists(self.live) else Action.CREATE

    @property
    def proves_possession(self) -> bool:
        return self.resource.needs_ca_key(self.live)


@dataclass
class Plan:
    resources: list[ResourcePlan]

    def count(self, action: Action) -> int:
        return sum(1 for r in self.resources if r.action is action)

    @property
    def needs_ca_key(self) -> bool:
        return any(r.proves_possession for r in self.resources)

    def summary(self) -> str:
        return (
            f"{self.count(Action.CREATE)} to create, {self.count(Action.UPDATE)} to change, "
            f"{self.count(Action.NONE)} unchanged"
        )


@dataclass
class DeployReport:
    applied: list[ResourcePlan]
    unchanged: list[ResourcePlan]

    @property
    def writes(self) -> int:
        return len(self.applied)

    def summary(self) -> str:
        if not self.applied:
            return f"No changes: all {len(self.unchanged)} resources are up to date."
        created = sum(1 for r in self.applied if r.action is Action.CREATE)
        return (
            f"Deployed: {created} created, {len(self.applied) - created} changed, "
            f"{len(self.unchanged)} unchanged."
        )


def resources_of(root: Construct) -> list[ArmResource]:
    """Every ArmResource under ``root``, in tree (= dependency) order."""
    return [node for node in root.node.find_all() if isinstance(node, ArmResource)]


def _plan_one(resource: ArmResource, ctx: ArmContext) -> ResourcePlan:
    live = resource.read(ctx)
    resource.live = live
    return ResourcePlan(resource, live, resource.changes(live), resource.notes(live))


def plan(root: Construct, ctx: ArmContext) -> Plan:
    """What deploy would change, resource by resource (reads only)."""
    return Plan([_plan_one(resource, ctx) for resource in resources_of(root)])


def deploy(root: Construct, ctx: ArmContext) -> DeployReport:
    """Apply the plan; raise ArmOperationError naming the resource on the first failure."""
    initial = plan(root, ctx)
    if initial.needs_ca_key and ctx.ca_key is None:
        due = ", ".join(r.resource.label for r in initial.resources if r.proves_possession)
        raise ArmInputError(
            f"{due}: proof of possession of the CA key is due; pass --ca-key-file "
            "(nothing was changed)"
        )
    report = DeployReport(applied=[], unchanged=[])
    written = False
    for step in initial.resources:
        resource = step.resource
        if written:
            # Something upstream changed: its outputs may change this resource's desired state.
            step = _plan_one(resource, ctx)
        if not step.changes:
            report.unchanged.append(step)
            continue
        try:
            resource.apply(ctx, step.live)
        except HttpResponseError as error:
            raise ArmOperationError.from_http(resource.label, error) from None
        written = True
        after = _plan_one(resource, ctx)
        if after.changes:
            change = after.changes[0]
            raise ArmOperationError(
                resource.label,
                "NotConverged",
                f"Azure accepted the change but {change.path} is "
                f"{'absent' if change.live is ABSENT else repr(change.live)} afterwards",
            )
        report.applied.append(step)
    return report
