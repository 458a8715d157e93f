"""Compare the desired metrics, alert policies and sink with what is live: what deploy would do.

Only the fields this library sets are compared, so fields Google fills in (names of
conditions, creation records, a sink's writer identity) never show as changes and a
second deploy changes nothing. Alert policies have no id of their own: ours carry
the user label ``managed-by: iot-remote-access`` and ``rule: NAME``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.logging_v2.types import LogMetric, LogSink
from google.cloud.monitoring_v3 import AlertPolicy
from google.protobuf import json_format

from iot_remote_access.gcp_monitoring.desired import (
    MANAGED_LABEL,
    MANAGED_VALUE,
    RULE_LABEL,
    MonitoringState,
)
from iot_remote_access.gcp_monitoring.workload_identity import ROLE, WorkloadIdentityBinding

METRIC_FIELDS = ("description", "filter", "metric_descriptor", "label_extractors")
POLICY_FIELDS = (
    "display_name",
    "combiner",
    "enabled",
    "notification_channels",
    "documentation",
    "alert_strategy",
    "conditions",
    "user_labels",
)
SINK_FIELDS = ("destination", "filter", "description")
#: What Google adds inside these fields; never compared.
_SERVER_KEYS = frozenset({"name", "type", "display_name_server"})


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


class Kind(StrEnum):
    METRIC = "log-based metric"
    POLICY = "alert policy"
    SINK = "log sink"
    IAM = "iam policy"


@dataclass(frozen=True)
class FieldDiff:
    """One managed field that differs: what is live and what deploy would set."""

    field: str
    live: Any
    desired: Any

    def __str__(self) -> str:
        live, desired = _shown_pair(_text(self.live), _text(self.desired))
        return f"{self.field}: {live} -> {desired}"


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _shown_pair(live: str, desired: str, width: int = 120) -> tuple[str, str]:
    """Both values from a little before their first difference, ``width`` characters each."""
    first = next(
        (i for i, (a, b) in enumerate(zip(live, desired, strict=False)) if a != b),
        min(len(live), len(desired)),
    )
    start = max(0, first - 40)

    def cut(text: str) -> str:
        part = text[start : start + width]
        return ("..." if start else "") + part + ("..." if start + width < len(text) else "")

    return cut(live), cut(desired)


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    action: Action
    fields: tuple[str, ...] = ()
    diffs: tuple[FieldDiff, ...] = ()
    #: What deploy sends: the desired resource (with the live name for a policy update).
    resource: Any = None
    live_name: str = ""


@dataclass(frozen=True)
class MonitoringPlan:
    changes: tuple[Change, ...]

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action != Action.UNCHANGED)


def _projection(message: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    raw = json_format.MessageToDict(type(message).pb(message), preserving_proto_field_name=True)
    return {name: _strip(raw.get(name)) for name in fields}


def _strip(value: Any) -> Any:
    """Drop keys the server adds (condition names, descriptor names/types)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _SERVER_KEYS}
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value


def _differing(live: Any, desired: Any, fields: tuple[str, ...]) -> tuple[FieldDiff, ...]:
    have, want = _projection(live, fields), _projection(desired, fields)
    if "metric_descriptor" in fields:
        # Google fills in the descriptor's name/type/display name: compare what we set.
        for side in (have, want):
            descriptor = side.get("metric_descriptor") or {}
            side["metric_descriptor"] = {
                k: descriptor.get(k) for k in ("labels", "metric_kind", "value_type", "unit")
            }
    return tuple(
        FieldDiff(name, have[name], want[name]) for name in fields if have[name] != want[name]
    )


def _get_or_none(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except gexc.NotFound:
        return None


def plan(
    state: MonitoringState, metrics: Any, policies: Any, config: Any, iam: Any
) -> MonitoringPlan:
    """``metrics``, ``policies``, ``config``, ``iam``: MetricsServiceV2Client,
    AlertPolicyServiceClient, ConfigServiceV2Client, IAMClient (or anything with their
    methods)."""
    parent = f"projects/{state.project}"
    changes: list[Change] = []
    for metric in state.metrics:
        name = f"{parent}/metrics/{metric.name}"
        live = _get_or_none(partial(metrics.get_log_metric, metric_name=name))
        changes.append(_change(Kind.METRIC, name, live, metric, METRIC_FIELDS))
    ours = _managed_policies(policies, parent)
    for policy in state.policies:
        rule = policy.user_labels[RULE_LABEL]
        live = ours.get(rule)
        change = _change(Kind.POLICY, f"{parent} rule={rule}", live, policy, POLICY_FIELDS)
        if live is not None:
            change = replace(change, live_name=live.name)
        changes.append(change)
    if state.sink is not None:
        name = f"{parent}/sinks/{state.sink.name}"
        live = _get_or_none(partial(config.get_sink, sink_name=name))
        changes.append(_change(Kind.SINK, name, live, state.sink, SINK_FIELDS))
    changes.append(_workload_identity(state.workload_identity, iam))
    return MonitoringPlan(tuple(changes))


def _workload_identity(binding: WorkloadIdentityBinding, iam: Any) -> Change:
    live = iam.get_iam_policy(request={"resource": binding.resource})
    request = binding.request(live)
    name = f"{binding.resource} {ROLE}"
    if request is None:
        return Change(Kind.IAM, name, Action.UNCHANGED)
    now = binding.members_now(live)
    diff = FieldDiff("members", now, sorted([*now, binding.member]))
    return Change(Kind.IAM, name, Action.UPDATE, ("members",), (diff,), resource=request)


def _change(kind: Kind, name: str, live: Any, desired: Any, fields: tuple[str, ...]) -> Change:
    if live is None:
        return Change(kind, name, Action.CREATE, resource=desired)
    differing = _differing(live, desired, fields)
    action = Action.UPDATE if differing else Action.UNCHANGED
    names = tuple(diff.field for diff in differing)
    return Change(kind, name, action, fields=names, diffs=differing, resource=desired)


def _managed_policies(policies: Any, parent: str) -> dict[str, AlertPolicy]:
    found: dict[str, AlertPolicy] = {}
    for policy in policies.list_alert_policies(name=parent):
        labels = dict(policy.user_labels)
        if labels.get(MANAGED_LABEL) == MANAGED_VALUE and RULE_LABEL in labels:
            found.setdefault(labels[RULE_LABEL], policy)
    return found


__all__ = ["Action", "Change", "Kind", "LogMetric", "LogSink", "MonitoringPlan", "plan"]
