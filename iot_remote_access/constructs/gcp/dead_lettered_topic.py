"""A topic with its dead-letter topic, and a subscription that keeps the dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from iot_remote_access.constructs.gcp.pubsub_subscription import PubsubSubscription
from iot_remote_access.constructs.gcp.pubsub_topic import PubsubTopic
from iot_remote_access.core.tree import Construct
from iot_remote_access.settings.gcp import DEAD_LETTER_HOLD_SUFFIX, DEAD_LETTER_SUFFIX


class DeadLetteredTopic(Construct):
    """``self.topic``, ``self.dead_letter`` (``<id>-dead-letter``) and ``self.dead_letter_hold``.

    A message published to a topic without subscriptions is dropped, so the
    dead-letter topic gets a subscription (``<id>-dead-letter-hold``) that keeps
    dead letters for the retention period, for people to inspect and replay.

        project, topic_id, labels, message_retention: as for :class:`PubsubTopic`
        (the hold subscription keeps at most 7 days). Default: 7 days, no labels.
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
        self.topic = PubsubTopic(
            self,
            "Topic",
            project=project,
            topic_id=topic_id,
            labels=labels,
            message_retention=message_retention,
        )
        self.dead_letter = PubsubTopic(
            self,
            "DeadLetter",
            project=project,
            topic_id=topic_id + DEAD_LETTER_SUFFIX,
            labels=labels,
            message_retention=message_retention,
        )
        self.dead_letter_hold = PubsubSubscription(
            self,
            "DeadLetterHold",
            topic=self.dead_letter,
            subscription_id=topic_id + DEAD_LETTER_SUFFIX + DEAD_LETTER_HOLD_SUFFIX,
            message_retention=min(message_retention, dt.timedelta(days=7)),
            labels=labels,
        )
