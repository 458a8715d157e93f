"""Apply a monitoring plan: create or update exactly the resources the plan names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.logging_v2.types import CreateSinkRequest, UpdateSinkRequest
from google.cloud.monitoring_v3 import AlertPolicy
from google.protobuf import field_mask_pb2

from iot_remote_access.gcp_monitoring.plan import (
    METRIC_FIELDS,
    POLICY_FIELDS,
    SINK_FIELDS,
    Action,
    Change,
    Kind,
    MonitoringPlan,
)


class MonitoringDeployFailed(RuntimeError):
    """One request was refused: says what was being done to which resource, and why.

    What was applied before it stays; a rerun plans only what is still missing.
    """


def deploy(
    result: MonitoringPlan,
    project: str,
    metrics: Any,
    policies: Any,
    config: Any,
    iam: Any,
    *,
    progress: Callable[[Change], None] | None = None,
) -> list[Change]:
    """Send one request per pending change, in plan order; return the changes applied."""
    parent = f"projects/{project}"
    applied: list[Change] = []
    for change in result.pending:
        if progress is not None:
            progress(change)
        try:
            if change.kind == Kind.IAM:
                iam.set_iam_policy(request=change.resource)
            else:
                _apply(change, parent, metrics, policies, config)
        except gexc.GoogleAPICallError as error:
            status = getattr(error.grpc_status_code, "name", type(error).__name__)
            message = (error.message or "").strip().splitlines()[:1]
            raise MonitoringDeployFailed(
                f"{change.action} {change.kind} {change.name}: {status} {' '.join(message)}".strip()
            ) from None
        applied.append(change)
    return applied


def _apply(change: Change, parent: str, metrics: Any, policies: Any, config: Any) -> None:
    create = change.action == Action.CREATE
    if change.kind == Kind.METRIC:
        if create:
            metrics.create_log_metric(parent=parent, metric=change.resource)
        else:
            metrics.update_log_metric(metric_name=change.name, metric=change.resource)
    elif change.kind == Kind.POLICY:
        if create:
            policies.create_alert_policy(name=parent, alert_policy=change.resource)
        else:
            policy = AlertPolicy(change.resource)
            policy.name = change.live_name
            mask = field_mask_pb2.FieldMask(paths=list(POLICY_FIELDS))
            policies.update_alert_policy(alert_policy=policy, update_mask=mask)
    elif create:
        # Its own writer identity: grant it on the destination (docs/gcp-access.md).
        config.create_sink(
            request=CreateSinkRequest(
                parent=parent, sink=change.resource, unique_writer_identity=True
            )
        )
    else:
        config.update_sink(
            request=UpdateSinkRequest(
                sink_name=change.name,
                sink=change.resource,
                unique_writer_identity=True,
                update_mask=field_mask_pb2.FieldMask(paths=list(SINK_FIELDS)),
            )
        )


__all__ = ["METRIC_FIELDS", "deploy"]
