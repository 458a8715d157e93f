"""A Pub/Sub topic as desired state."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from constructs import Construct
from google.pubsub_v1 import types

from iot_remote_access.constructs.gcp.iam_grant import PUBLISHER_ROLE, IamGrant

_PROJECT_RE = re.compile(r"\A[a-z][a-z0-9-]{4,28}[a-z0-9]\Z")
_ID_RE = re.compile(r"\A[a-zA-Z][a-zA-Z0-9._~%+-]{2,254}\Z")
PROJECT_ID_RULE = "[a-z][a-z0-9-]{4,28}[a-z0-9] (6 to 30 characters)"


def validate_project_id(project: str) -> str:
    if not _PROJECT_RE.match(project):
        raise ValueError(f"project {project!r} is not a project id; allowed: {PROJECT_ID_RULE}")
    return project


def validate_pubsub_id(value: str, *, what: str) -> str:
    if not _ID_RE.match(value) or value.lower().startswith("goog"):
        raise ValueError(
            f"{what} {value!r} is not a Pub/Sub id; allowed: [a-zA-Z][a-zA-Z0-9._~%+-]{{2,254}}, "
            "not starting with 'goog'"
        )
    return value


class PubsubTopic(Construct):
    """One topic: ``self.topic`` is the ``google.pubsub_v1.types.Topic`` to deploy.

    Props:
        project: the project id.
        topic_id: the topic's id.
        labels: labels on the topic. Default: none.
        message_retention: how long the topic keeps messages, so a subscription
            can seek back or a new one start from the past (10 minutes to 31 days).
            Default: 7 days.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        project: str,
        topic_id: str,
        labels: Mapping[str, str] | None = None,
        message_retention: dt.timedelta = dt.timedelta(days=7),
    ) -> None:
        super().__init__(scope, id)
        validate_project_id(project)
        validate_pubsub_id(topic_id, what="topic")
        if not dt.timedelta(minutes=10) <= message_retention <= dt.timedelta(days=31):
            raise ValueError(
                f"message_retention {message_retention} for topic {topic_id!r}; "
                "allowed: 10 minutes to 31 days"
            )
        self.project = project
        self.topic_id = topic_id
        self.name = f"projects/{project}/topics/{topic_id}"
        self.topic = types.Topic(
            name=self.name,
            labels=dict(labels or {}),
            message_retention_duration=message_retention,
        )
        self.grants: list[IamGrant] = []

    def grant_publish(self, member: str) -> IamGrant:
        """Let ``member`` publish to this topic only."""
        grant = IamGrant(self.name, PUBLISHER_ROLE, member)
        if grant not in self.grants:
            self.grants.append(grant)
        return grant
