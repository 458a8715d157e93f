"""A Pub/Sub pull subscription as desired state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from google.pubsub_v1 import types

from iot_remote_access.constructs.gcp.iam_grant import SUBSCRIBER_ROLE, IamGrant
from iot_remote_access.constructs.gcp.pubsub_topic import PubsubTopic
from iot_remote_access.core.gcp_rules import validate_pubsub_id
from iot_remote_access.core.tree import Construct


class PubsubSubscription(Construct):
    """One pull subscription: ``self.subscription`` is the ``types.Subscription`` to deploy.

    Subscriptions made here never expire (Pub/Sub's default deletes a subscription
    after 31 days without a subscriber, which would silently drop a fleet's commands).

    :param topic: the topic it receives from.
    :param subscription_id: its id.
    :param ack_deadline: time to acknowledge before redelivery (10 s to 600 s). Default: 30 s.
    :param message_ordering: deliver messages with the same ordering key in order
        (fixed once created). Default: False.
    :param retry_backoff: (minimum, maximum) delay before redelivering a nacked or
        expired message, each 0 to 600 s. Default: Pub/Sub's immediate redelivery.
    :param dead_letter_topic: where messages go after ``max_delivery_attempts``.
        Default: none.
    :param max_delivery_attempts: 5 to 100. Default: 5.
    :param pubsub_service_agent: the project's Pub/Sub service agent
        (``serviceAccount:service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com``);
        required with a dead-letter topic, which it must be allowed to publish
        to, and on this subscription, which it must be allowed to consume.
    :param message_retention: how long unacknowledged messages are kept (10 minutes
        to 7 days). Default: 7 days.
    :param filter: a Pub/Sub filter on attributes (fixed once created). Default: none.
    :param labels: Default: none.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic: PubsubTopic,
        subscription_id: str,
        ack_deadline: dt.timedelta = dt.timedelta(seconds=30),
        message_ordering: bool = False,
        retry_backoff: tuple[dt.timedelta, dt.timedelta] | None = None,
        dead_letter_topic: PubsubTopic | None = None,
        max_delivery_attempts: int = 5,
        pubsub_service_agent: str | None = None,
        message_retention: dt.timedelta = dt.timedelta(days=7),
        filter: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        validate_pubsub_id(subscription_id, field_name="subscription")
        seconds = ack_deadline.total_seconds()
        if not (10 <= seconds <= 600 and seconds.is_integer()):
            raise ValueError(
                f"ack_deadline {ack_deadline} for subscription {subscription_id!r}; "
                "allowed: whole seconds from 10 to 600"
            )
        if not dt.timedelta(minutes=10) <= message_retention <= dt.timedelta(days=7):
            raise ValueError(
                f"message_retention {message_retention} for subscription {subscription_id!r}; "
                "allowed: 10 minutes to 7 days"
            )
        if not 5 <= max_delivery_attempts <= 100:
            raise ValueError(
                f"max_delivery_attempts {max_delivery_attempts} for subscription "
                f"{subscription_id!r}; allowed: 5 to 100"
            )
        retry_policy = None
        if retry_backoff is not None:
            low, high = retry_backoff
            limit = dt.timedelta(seconds=600)
            if not (dt.timedelta(0) <= low <= high <= limit):
                raise ValueError(
                    f"retry_backoff ({low}, {high}) for subscription {subscription_id!r}; "
                    "allowed: 0 <= minimum <= maximum <= 600 s"
                )
            retry_policy = types.RetryPolicy(minimum_backoff=low, maximum_backoff=high)
        dead_letter_policy = None
        if dead_letter_topic is not None:
            if pubsub_service_agent is None:
                raise ValueError(
                    f"subscription {subscription_id!r} has a dead-letter topic but no "
                    "pubsub_service_agent; allowed: "
                    "'serviceAccount:service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com'"
                )
            dead_letter_policy = types.DeadLetterPolicy(
                dead_letter_topic=dead_letter_topic.name,
                max_delivery_attempts=max_delivery_attempts,
            )
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.name = f"projects/{topic.project}/subscriptions/{subscription_id}"
        self.subscription = types.Subscription(
            name=self.name,
            topic=topic.name,
            ack_deadline_seconds=int(seconds),
            enable_message_ordering=message_ordering,
            message_retention_duration=message_retention,
            expiration_policy=types.ExpirationPolicy(),  # no ttl: never expires
            filter=filter,
            labels=dict(labels or {}),
        )
        if retry_policy is not None:
            self.subscription.retry_policy = retry_policy
        if dead_letter_policy is not None:
            self.subscription.dead_letter_policy = dead_letter_policy
        self.grants: list[IamGrant] = []
        if dead_letter_topic is not None and pubsub_service_agent is not None:
            # Pub/Sub forwards dead letters as its service agent: it must be able to
            # publish there and to acknowledge the message here.
            dead_letter_topic.grant_publish(pubsub_service_agent)
            self.grant_consume(pubsub_service_agent)

    def grant_consume(self, member: str) -> IamGrant:
        """Let ``member`` pull and acknowledge from this subscription only."""
        grant = IamGrant(self.name, SUBSCRIBER_ROLE, member)
        if grant not in self.grants:
            self.grants.append(grant)
        return grant
