"""The desired state of a construct tree: every topic, subscription and IAM grant in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from google.pubsub_v1 import types

from iot_remote_access.constructs.gcp.iam_grant import IamGrant
from iot_remote_access.constructs.gcp.pubsub_subscription import PubsubSubscription
from iot_remote_access.constructs.gcp.pubsub_topic import PubsubTopic
from iot_remote_access.core.tree import Construct


@dataclass(frozen=True)
class DesiredState:
    """What should exist, in the order it can be created (topics before subscriptions)."""

    topics: tuple[types.Topic, ...]
    subscriptions: tuple[types.Subscription, ...]
    grants: tuple[IamGrant, ...]

    @classmethod
    def of(cls, scope: Construct) -> DesiredState:
        """Collect the tree under ``scope``; two constructs for one name is an error."""
        topics: dict[str, types.Topic] = {}
        subscriptions: dict[str, types.Subscription] = {}
        grants: list[IamGrant] = []
        for node in scope.node.find_all():
            if isinstance(node, PubsubTopic):
                _add(topics, node.name, node.topic, node.node.path)
                grants += node.grants
            elif isinstance(node, PubsubSubscription):
                _add(subscriptions, node.name, node.subscription, node.node.path)
                grants += node.grants
        for subscription in subscriptions.values():
            for needed in (subscription.topic, subscription.dead_letter_policy.dead_letter_topic):
                if needed and needed not in topics:
                    raise ValueError(
                        f"subscription {subscription.name!r} needs topic {needed!r}, which is "
                        "not in this construct tree; allowed: topics defined in the same tree"
                    )
        return cls(
            tuple(topics.values()), tuple(subscriptions.values()), tuple(dict.fromkeys(grants))
        )


_R = TypeVar("_R")


def _add(into: dict[str, _R], name: str, resource: _R, path: str) -> None:
    if name in into:
        raise ValueError(
            f"{name!r} is defined twice (again at {path!r}); allowed: one construct per name"
        )
    into[name] = resource
