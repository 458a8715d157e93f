"""The GCP reference deployment's Pub/Sub side, composed from the ``gcp`` settings."""

from __future__ import annotations

import datetime as dt

from iot_remote_access.constructs.gcp import DeadLetteredTopic, DesiredState, PubsubSubscription
from iot_remote_access.core.tree import Construct
from iot_remote_access.settings.gcp import GcpSettings


class GcpPubsubStack(Construct):
    """Telemetry and commands topics (each dead-lettered), the bridge's commands
    subscription, the analytics pull subscription and resource-level IAM.

    The bridge's service account may publish to the telemetry topic and the two
    dead-letter topics (where it sends what it cannot deliver) and consume the
    commands subscription; nothing at project level. A plain-Python tree (no
    Node.js): for a stand-alone one, pass ``iot_remote_access.core.tree.Root()``
    as the scope.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        settings: GcpSettings,
        commands: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        pubsub = settings.pubsub
        retention = dt.timedelta(days=pubsub.message_retention_days)
        bridge = f"serviceAccount:{settings.bridge.service_account}"
        agent = settings.pubsub_service_agent
        self.telemetry = DeadLetteredTopic(
            self,
            "Telemetry",
            project=project,
            topic_id=pubsub.telemetry_topic,
            labels=settings.labels,
            message_retention=retention,
        )
        self.commands = DeadLetteredTopic(
            self,
            "Commands",
            project=project,
            topic_id=pubsub.commands_topic,
            labels=settings.labels,
            message_retention=retention,
        )
        delivery = {
            "ack_deadline": dt.timedelta(seconds=pubsub.ack_deadline_seconds),
            "retry_backoff": (
                dt.timedelta(seconds=pubsub.retry_min_backoff_seconds),
                dt.timedelta(seconds=pubsub.retry_max_backoff_seconds),
            ),
            "max_delivery_attempts": pubsub.max_delivery_attempts,
            "pubsub_service_agent": agent,
            "message_retention": retention,
            "labels": settings.labels,
        }
        self.bridge_subscription = PubsubSubscription(
            self,
            "BridgeCommands",
            topic=self.commands.topic,
            subscription_id=pubsub.bridge_subscription,
            message_ordering=True,
            dead_letter_topic=self.commands.dead_letter,
            **delivery,  # type: ignore[arg-type]
        )
        self.analytics_subscription = PubsubSubscription(
            self,
            "Analytics",
            topic=self.telemetry.topic,
            subscription_id=pubsub.analytics_subscription,
            message_ordering=True,
            dead_letter_topic=self.telemetry.dead_letter,
            filter=pubsub.analytics_filter,
            **delivery,  # type: ignore[arg-type]
        )
        self.telemetry.topic.grant_publish(bridge)
        self.telemetry.dead_letter.grant_publish(bridge)
        self.commands.dead_letter.grant_publish(bridge)
        self.bridge_subscription.grant_consume(bridge)
        for member in pubsub.analytics_members:
            self.analytics_subscription.grant_consume(member)
        self.responses: DeadLetteredTopic | None = None
        self.responses_subscription: PubsubSubscription | None = None
        if commands:
            self._responses(project, settings, delivery, bridge)
        self.rotation: dict[str, DeadLetteredTopic | PubsubSubscription] = {}
        if settings.rotation_service is not None:
            self._rotation(project, settings, delivery, bridge)

    def _responses(
        self, project: str, settings: GcpSettings, delivery: dict[str, object], bridge: str
    ) -> None:
        pubsub = settings.pubsub
        self.responses = DeadLetteredTopic(
            self,
            "CommandResponses",
            project=project,
            topic_id=pubsub.responses_topic,
            labels=settings.labels,
            message_retention=delivery["message_retention"],  # type: ignore[arg-type]
        )
        # No ordering: each response names its command; the service needs no order.
        self.responses_subscription = PubsubSubscription(
            self,
            "CommandService",
            topic=self.responses.topic,
            subscription_id=pubsub.responses_subscription,
            message_ordering=False,
            dead_letter_topic=self.responses.dead_letter,
            **delivery,  # type: ignore[arg-type]
        )
        self.responses.topic.grant_publish(bridge)
        self.responses.dead_letter.grant_publish(bridge)
        for member in pubsub.command_service_members:
            self.commands.topic.grant_publish(member)
            self.responses_subscription.grant_consume(member)

    def _rotation(
        self, project: str, settings: GcpSettings, delivery: dict[str, object], bridge: str
    ) -> None:
        """Certificate rotation (docs/gcp-rotation.md): the rotation bridge (the bridge's
        service account) publishes CSRs and confirmations and consumes certificates; the
        rotation service consumes the first two, publishes certificates and rotate commands.
        A CSR held back while CA Service throttles is redelivered many times: its
        subscriptions allow the most delivery attempts before dead-lettering."""
        rotation = settings.rotation_service
        assert rotation is not None
        service = f"serviceAccount:{rotation.service_account}"
        retention = delivery["message_retention"]
        patient = {**delivery, "max_delivery_attempts": 100}
        topics = {
            "Csr": rotation.csr_topic,
            "Confirm": rotation.confirm_topic,
            "Certificates": rotation.certificate_topic,
        }
        made = {
            name: DeadLetteredTopic(
                self,
                f"Rotation{name}",
                project=project,
                topic_id=topic_id,
                labels=settings.labels,
                message_retention=retention,  # type: ignore[arg-type]
            )
            for name, topic_id in topics.items()
        }
        subscriptions = {
            "Csr": (rotation.csr_subscription, service),
            "Confirm": (rotation.confirm_subscription, service),
            "Certificates": (rotation.certificate_subscription, bridge),
        }
        for name, (subscription_id, consumer) in subscriptions.items():
            subscription = PubsubSubscription(
                self,
                f"Rotation{name}Subscription",
                topic=made[name].topic,
                subscription_id=subscription_id,
                message_ordering=name == "Certificates",  # a thing's answers in order
                dead_letter_topic=made[name].dead_letter,
                **patient,  # type: ignore[arg-type]
            )
            subscription.grant_consume(consumer)
            self.rotation[f"{name}Subscription"] = subscription
            self.rotation[name] = made[name]
        for name, publisher in (("Csr", bridge), ("Confirm", bridge), ("Certificates", service)):
            made[name].topic.grant_publish(publisher)
        for dead in made.values():
            dead.dead_letter.grant_publish(bridge)
        self.commands.topic.grant_publish(service)  # the planner's rotate commands

    def desired_state(self) -> DesiredState:
        return DesiredState.of(self)
