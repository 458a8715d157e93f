"""A resource-level IAM grant: one role for one member on one topic or subscription."""

from __future__ import annotations

import re
from dataclasses import dataclass

PUBLISHER_ROLE = "roles/pubsub.publisher"
SUBSCRIBER_ROLE = "roles/pubsub.subscriber"
#: The only roles this library grants: publish to a topic, consume a subscription.
ALLOWED_ROLES = frozenset({PUBLISHER_ROLE, SUBSCRIBER_ROLE})
_RESOURCE_RE = re.compile(r"\Aprojects/[^/]+/(topics|subscriptions)/[^/*]+\Z")


@dataclass(frozen=True)
class IamGrant:
    """``member`` gets ``role`` on ``resource`` (one topic or subscription), nothing wider."""

    resource: str
    role: str
    member: str

    def __post_init__(self) -> None:
        if not _RESOURCE_RE.match(self.resource):
            raise ValueError(
                f"IAM grant on {self.resource!r}; allowed: one topic or subscription "
                "(projects/P/topics/T or projects/P/subscriptions/S), never a project"
            )
        if self.role not in ALLOWED_ROLES:
            raise ValueError(f"IAM role {self.role!r}; allowed: {', '.join(sorted(ALLOWED_ROLES))}")
        if ":" not in self.member or self.member.startswith(("allUsers", "allAuthenticatedUsers")):
            raise ValueError(
                f"IAM member {self.member!r}; allowed: 'serviceAccount:EMAIL', 'group:EMAIL', ..."
            )
