"""AlarmTopic: the KMS-encrypted SNS topic every alarm and finding goes to."""

from __future__ import annotations

import re
from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from iot_remote_access.constructs.aws import props
from iot_remote_access.constructs.aws.key_policy import add_to_key_policy

#: Services that publish alarms, findings and events to the topic. An encrypted
#: topic needs them allowed on its key, or their deliveries are silently dropped.
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
PUBLISHING_SERVICES = (
    "cloudwatch.amazonaws.com",
    "events.amazonaws.com",
    "iot.amazonaws.com",
)


class AlarmTopic(Construct):
    """An SNS topic encrypted with its own customer-managed key, TLS-only.

    :param display_name: Default: "iot-remote-access alarms".
    :param email_addresses: e-mail subscriptions (each must confirm). Default: none.
    :param key: any ``kms.IKey`` instead of a new one. Its policy gets a statement
        letting CloudWatch, EventBridge and AWS IoT of this account use it; an
        imported key (``Key.from_key_arn``) cannot be changed here, so synthesis
        warns with the statement to add. Default: a new key with rotation.

    Example::

        from iot_remote_access.constructs.aws import AlarmTopic

        alarms = AlarmTopic(stack, "Alarms", email_addresses=["ops@example.com"])
        alarms.topic  # an sns.ITopic: pass it as alarm_topic to the other constructs
        on_call = AlarmTopic.from_topic_arn(
            stack, "OnCall", "arn:aws:sns:eu-central-1:123456789012:on-call"
        )  # an existing topic: any sns.ITopic is taken where a topic is

    Every ``alarm_topic``/``findings_topic``/``incident_topic`` parameter of the
    library takes any ``sns.ITopic``; an existing topic encrypted with a customer key
    needs that key to allow CloudWatch (and EventBridge, AWS IoT) to use it.

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        display_name: str = "iot-remote-access alarms",
        email_addresses: Sequence[str] = (),
        key: kms.IKey | None = None,
    ) -> None:
        props.check(
            "AlarmTopic",
            display_name=(display_name, str),
            email_addresses=(email_addresses, props.SequenceOf(str)),
            key=(key, props.optional(props.I_KEY)),
        )
        super().__init__(scope, construct_id)
        for address in email_addresses:
            if not cdk.Token.is_unresolved(address) and "@" not in address:
                raise ValueError(
                    f"email_addresses: {address!r} is not an e-mail address; "
                    "allowed: name@example.com"
                )
        self.key = key or kms.Key(
            self,
            "Key",
            description="iot-remote-access alarm topic",
            enable_key_rotation=True,
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=display_name,
            master_key=self.key,
            enforce_ssl=True,
        )
        # aws:SourceAccount keeps other accounts' alarms and rules out (confused deputy).
        same_account = {"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}}
        principals: list[iam.IPrincipal] = [iam.ServicePrincipal(s) for s in PUBLISHING_SERVICES]
        add_to_key_policy(
            self.key,
            self,
            iam.PolicyStatement(
                sid="AllowAlarmPublishersToEncrypt",
                principals=principals,
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions=same_account,
            ),
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmPublishers",
                principals=principals,
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=same_account,
            )
        )
        for address in email_addresses:
            self.topic.add_subscription(subscriptions.EmailSubscription(address))

    @classmethod
    def from_topic_arn(cls, scope: Construct, construct_id: str, topic_arn: str) -> sns.ITopic:
        """An existing SNS topic, by ARN (aws-cdk-lib's ``Topic.from_topic_arn``, the ARN
        checked first: a wrong type is a ``TypeError``, a malformed ARN a ``ValueError``)."""
        props.check("AlarmTopic.from_topic_arn", topic_arn=(topic_arn, str))
        if not cdk.Token.is_unresolved(topic_arn) and not _TOPIC_ARN.match(topic_arn):
            shown = topic_arn if len(topic_arn) <= 60 else f"{topic_arn[:57]}..."
            raise ValueError(
                f"topic_arn: {shown!r} is not an SNS topic ARN; "
                "allowed: arn:aws:sns:REGION:ACCOUNT:NAME"
            )
        return sns.Topic.from_topic_arn(scope, construct_id, topic_arn)

    def grant_publish(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` publish to the topic (and use its key to encrypt)."""
        props.check("AlarmTopic.grant_publish", grantee=(grantee, props.I_GRANTABLE))
        return self.topic.grant_publish(grantee)
