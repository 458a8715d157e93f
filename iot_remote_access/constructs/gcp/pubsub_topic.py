"""A Pub/Sub topic as desired state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from google.pubsub_v1 import types

from iot_remote_access.constructs.gcp.iam_grant import PUBLISHER_ROLE, IamGrant
from iot_remote_access.core.gcp_rules import validate_project_id, validate_pubsub_id
from iot_remote_access.core.tree import Construct


class PubsubTopic(Construct):
    """One topic: ``self.topic`` is the ``google.pubsub_v1.types.Topic`` to deploy.

    :param project: the project id.
    :param topic_id: the topic's id.
    :param labels: labels on the topic. Default: none.
    :param message_retention: how long the topic keeps messages, so a subscription
        can seek back or a new one start from the past (10 minutes to 31 days).
        Default: 7 days.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        topic_id: str,
        labels: Mapping[str, str] | None = None,
        message_retention: dt.timedelta = dt.timedelta(days=7),
    ) -> None:
        super().__init__(scope, construct_id)
        validate_project_id(project, field_name="project")
        validate_pubsub_id(topic_id, field_name="topic")
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
