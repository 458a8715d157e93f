"""Apply a :class:`~iot_remote_access.pubsub.plan.Plan`: create and update what differs.

Idempotent: a resource that already matches is not written to, so a second
deploy sends no writes. A blocked plan changes nothing. IAM policies are read
again right before each write (read-modify-write with the etag).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.protobuf import field_mask_pb2

from iot_remote_access.constructs.gcp.desired_state import DesiredState
from iot_remote_access.pubsub.iam_requests import grants_by_resource, set_policy_request
from iot_remote_access.pubsub.plan import Action, Kind, Plan, ResourceChange


class DeployBlocked(Exception):
    """The plan has changes Pub/Sub cannot make in place; nothing was changed."""


class DeployFailed(Exception):
    """Pub/Sub refused one change; the changes before it were applied (a re-run continues)."""

    def __init__(self, change: ResourceChange, error: gexc.GoogleAPICallError) -> None:
        status = error.grpc_status_code.name if error.grpc_status_code else type(error).__name__
        message = (error.message or "").strip().splitlines()
        super().__init__(
            f"{change.action} {change.kind} {change.name}: {status} {message[0] if message else ''}"
        )
        self.change = change


def deploy(
    plan: Plan,
    desired: DesiredState,
    publisher: Any,
    subscriber: Any,
    *,
    progress: Callable[[ResourceChange], None] | None = None,
) -> list[ResourceChange]:
    """Apply ``plan`` (made from ``desired``); return the changes applied, in order."""
    if plan.blocked:
        first = plan.blocked[0]
        raise DeployBlocked(f"{first.kind} {first.name}: {first.note}")
    wanted = grants_by_resource(desired.grants)
    applied: list[ResourceChange] = []
    for change in plan.pending:
        if progress is not None:
            progress(change)
        try:
            if _apply(change, wanted, publisher, subscriber):
                applied.append(change)
        except gexc.GoogleAPICallError as error:
            raise DeployFailed(change, error) from error
    return applied


def _apply(
    change: ResourceChange, wanted: dict[str, dict[str, set[str]]], publisher: Any, subscriber: Any
) -> bool:
    """Send one change; False when an IAM policy turned out to need nothing."""
    mask = field_mask_pb2.FieldMask(paths=[f.field for f in change.fields])
    if change.kind is Kind.TOPIC and change.action is Action.CREATE:
        publisher.create_topic(request=change.request)
    elif change.kind is Kind.TOPIC:
        publisher.update_topic(request={"topic": change.request, "update_mask": mask})
    elif change.kind is Kind.SUBSCRIPTION and change.action is Action.CREATE:
        subscriber.create_subscription(request=change.request)
    elif change.kind is Kind.SUBSCRIPTION:
        subscriber.update_subscription(
            request={"subscription": change.request, "update_mask": mask}
        )
    else:
        api = publisher if "/topics/" in change.name else subscriber
        live = api.get_iam_policy(request={"resource": change.name})
        request = set_policy_request(change.name, live, wanted[change.name])
        if request is None:
            return False
        api.set_iam_policy(request=request)
    return True
