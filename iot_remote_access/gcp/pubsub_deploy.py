"""Apply a :class:`~iot_remote_access.gcp.pubsub_plan.Plan`: create and update what differs.

Idempotent: a resource that already matches is not written to, so a second
deploy sends no writes. A blocked plan changes nothing. IAM policies are read
again right before each write (read-modify-write with the etag).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import field_mask_pb2

from iot_remote_access.constructs.gcp.desired_state import DesiredState
from iot_remote_access.gcp.iam_requests import grants_by_resource, set_policy_request
from iot_remote_access.gcp.pubsub_plan import Action, Kind, Plan, ResourceChange


class DeployBlocked(Exception):
    """The plan has changes Pub/Sub cannot make in place; nothing was changed."""


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
        if change.kind is Kind.TOPIC:
            if change.action is Action.CREATE:
                publisher.create_topic(request=change.request)
            else:
                publisher.update_topic(
                    request={
                        "topic": change.request,
                        "update_mask": field_mask_pb2.FieldMask(
                            paths=[f.field for f in change.fields]
                        ),
                    }
                )
        elif change.kind is Kind.SUBSCRIPTION:
            if change.action is Action.CREATE:
                subscriber.create_subscription(request=change.request)
            else:
                subscriber.update_subscription(
                    request={
                        "subscription": change.request,
                        "update_mask": field_mask_pb2.FieldMask(
                            paths=[f.field for f in change.fields]
                        ),
                    }
                )
        else:
            api = publisher if "/topics/" in change.name else subscriber
            live = api.get_iam_policy(request={"resource": change.name})
            request = set_policy_request(change.name, live, wanted[change.name])
            if request is None:
                continue
            api.set_iam_policy(request=request)
        applied.append(change)
    return applied
