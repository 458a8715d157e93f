"""Compare a desired Pub/Sub state with what is live: what ``deploy`` would do.

Only the fields this library manages are compared; anything else on a live
resource (set by someone else) is left alone. Fields Pub/Sub cannot change on
an existing subscription (topic, ordering, filter) make the plan blocked: a
deploy then changes nothing and says which resource to recreate by hand,
because deleting a subscription deletes its unacknowledged messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from google.api_core import exceptions as gexc
from google.iam.v1 import policy_pb2
from google.pubsub_v1 import types

from iot_remote_access.constructs.gcp.desired_state import DesiredState
from iot_remote_access.pubsub.iam_requests import (
    grants_by_resource,
    missing_members,
    set_policy_request,
)

TOPIC_FIELDS = ("labels", "message_retention_duration")
SUBSCRIPTION_FIELDS = (
    "topic",
    "ack_deadline_seconds",
    "enable_message_ordering",
    "filter",
    "message_retention_duration",
    "retain_acked_messages",
    "expiration_policy",
    "retry_policy",
    "dead_letter_policy",
    "labels",
)
IMMUTABLE_SUBSCRIPTION_FIELDS = frozenset({"topic", "enable_message_ordering", "filter"})
#: Set, the emulator is in use: it has no IAM, so IAM is not planned.
EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    #: A field that cannot change in place differs: deploy refuses.
    BLOCKED = "blocked"
    #: Not planned (IAM on the emulator).
    SKIPPED = "skipped"


class Kind(StrEnum):
    TOPIC = "topic"
    SUBSCRIPTION = "subscription"
    IAM = "iam policy"


@dataclass(frozen=True)
class FieldChange:
    field: str
    live: Any
    desired: Any

    def __str__(self) -> str:
        return f"{self.field}: {_show(self.live)} -> {_show(self.desired)}"


@dataclass(frozen=True)
class ResourceChange:
    kind: Kind
    name: str
    action: Action
    fields: tuple[FieldChange, ...] = ()
    #: What deploy sends: the Topic/Subscription, or the SetIamPolicyRequest.
    request: Any = None
    note: str = ""


@dataclass(frozen=True)
class Plan:
    changes: tuple[ResourceChange, ...] = field(default_factory=tuple)

    @property
    def pending(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.action in (Action.CREATE, Action.UPDATE))

    @property
    def blocked(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.action is Action.BLOCKED)


class TopicApi(Protocol):
    def get_topic(self, *, request: dict[str, str]) -> types.Topic: ...
    def get_iam_policy(self, *, request: dict[str, str]) -> policy_pb2.Policy: ...


class SubscriptionApi(Protocol):
    def get_subscription(self, *, request: dict[str, str]) -> types.Subscription: ...
    def get_iam_policy(self, *, request: dict[str, str]) -> policy_pb2.Policy: ...


def plan(
    desired: DesiredState,
    publisher: TopicApi,
    subscriber: SubscriptionApi,
    *,
    iam: bool | None = None,
) -> Plan:
    """Read each desired resource's live state and compare. ``iam`` Default: off on the emulator."""
    if iam is None:
        iam = not os.environ.get(EMULATOR_ENV)
    changes: list[ResourceChange] = []
    for topic in desired.topics:
        changes.append(
            _compare(
                Kind.TOPIC,
                topic,
                _get(publisher.get_topic, topic.name, "topic"),
                TOPIC_FIELDS,
                frozenset(),
            )
        )
    for sub in desired.subscriptions:
        live = _get(subscriber.get_subscription, sub.name, "subscription")
        changes.append(
            _compare(
                Kind.SUBSCRIPTION, sub, live, SUBSCRIPTION_FIELDS, IMMUTABLE_SUBSCRIPTION_FIELDS
            )
        )
    for resource, wanted in grants_by_resource(desired.grants).items():
        if not iam:
            changes.append(
                ResourceChange(
                    Kind.IAM,
                    resource,
                    Action.SKIPPED,
                    note="the Pub/Sub emulator has no IAM",
                )
            )
            continue
        api = publisher if "/topics/" in resource else subscriber
        exists = any(c.name == resource and c.action is not Action.CREATE for c in changes)
        live_policy = (
            api.get_iam_policy(request={"resource": resource}) if exists else policy_pb2.Policy()
        )
        request = set_policy_request(resource, live_policy, wanted)
        if request is None:
            changes.append(ResourceChange(Kind.IAM, resource, Action.UNCHANGED))
            continue
        added = tuple(
            FieldChange(role, sorted(have) or None, sorted(have | members))
            for role, members in sorted(missing_members(live_policy, wanted).items())
            for have in [
                {
                    m
                    for b in live_policy.bindings
                    if b.role == role and not b.HasField("condition")
                    for m in b.members
                }
            ]
        )
        changes.append(ResourceChange(Kind.IAM, resource, Action.UPDATE, added, request))
    return Plan(tuple(changes))


def _get(call: Any, name: str, key: str) -> Any:
    try:
        return call(request={key: name})
    except gexc.NotFound:
        return None


def _compare(
    kind: Kind, desired: Any, live: Any, managed: tuple[str, ...], immutable: frozenset[str]
) -> ResourceChange:
    if live is None:
        return ResourceChange(kind, desired.name, Action.CREATE, request=desired)
    want = type(desired).to_dict(desired)
    have = type(live).to_dict(live)
    diffs = tuple(
        FieldChange(name, have.get(name), want.get(name))
        for name in managed
        if have.get(name) != want.get(name)
    )
    if not diffs:
        return ResourceChange(kind, desired.name, Action.UNCHANGED)
    fixed = [d.field for d in diffs if d.field in immutable]
    if fixed:
        return ResourceChange(
            kind,
            desired.name,
            Action.BLOCKED,
            diffs,
            note=f"{', '.join(fixed)} cannot change on an existing subscription; "
            "delete and recreate it (its unacknowledged messages are lost)",
        )
    return ResourceChange(kind, desired.name, Action.UPDATE, diffs, request=desired)


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    return repr(value)
