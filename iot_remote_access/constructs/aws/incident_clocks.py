"""IncidentClocks: NIS2 deadlines for every high-severity security finding, with alarms.

A rule on the security events (``source: iot-remote-access.security``, ``severity:
high``) runs the opener, which appends ``incident.open`` to the :class:`AccessLedger`
and keeps the incident's clock item next to the chain (same table, partition
``<ledger id>#incidents``). A scheduled checker publishes one message to the alarm
topic for every clock past due and not recorded as sent (early warning 24 h,
notification 72 h, final report one month after the notification) and appends
``incident.overdue``. Operators record what they sent with ``iot-remote-access
evidence incident ack|report``; ``evidence pack`` shows every clock.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from iot_remote_access.constructs.aws import nag, props
from iot_remote_access.constructs.aws.access_ledger import AccessLedger
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.core.security_detections import EVENT_DETAIL_TYPE, EVENT_SOURCE

#: The incidents' partition in the ledger's table (a ledger id cannot contain "#").
INCIDENT_PARTITION_SUFFIX = "#incidents"
DEFAULT_CHECK_MINUTES = 15


class IncidentClocks(Construct):
    """Opens an incident per high-severity finding and alarms on overdue NIS2 reports.

    :param ledger: the :class:`AccessLedger` that records incidents (and holds their
        clock items in its table).
    :param alarm_topic: where overdue clocks and the functions' failures are sent.
    :param event_bus: the bus the security findings are put on. Default: the account's
        default bus (as ``SecurityMonitoring``'s default).
    :param check_interval: how often overdue clocks are checked. Default: 15 minutes;
        allowed: 5 minutes to 6 hours (an alarm at most that late).

    Public attributes: ``opener`` and ``checker`` (``LibraryFunction``), ``finding_rule``,
    ``schedule``, ``failures_alarm``.

    Example::

        from iot_remote_access.constructs.aws import AccessLedger, AlarmTopic, IncidentClocks

        ledger = AccessLedger(stack, "Ledger")
        alarms = AlarmTopic(stack, "Alarms")
        IncidentClocks(stack, "Incidents", ledger=ledger, alarm_topic=alarms.topic)
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ledger: AccessLedger,
        alarm_topic: sns.ITopic,
        event_bus: events.IEventBus | None = None,
        check_interval: cdk.Duration | None = None,
    ) -> None:
        props.check(
            "IncidentClocks",
            ledger=(ledger, AccessLedger),
            alarm_topic=(alarm_topic, props.I_TOPIC),
            event_bus=(event_bus, props.optional(props.I_EVENT_BUS)),
            check_interval=(check_interval, props.optional(cdk.Duration)),
        )
        interval = check_interval or cdk.Duration.minutes(DEFAULT_CHECK_MINUTES)
        if (
            not cdk.Token.is_unresolved(interval.to_minutes())
            and not 5 <= interval.to_minutes() <= 360
        ):
            raise ValueError(
                f"check_interval: {interval.to_minutes()} minutes is not allowed; allowed: 5 to 360"
            )
        super().__init__(scope, construct_id)
        self.ledger = ledger
        self.opener = self._function(
            "Opener",
            "incident_open",
            "Opens an incident (NIS2 clocks) per high-severity finding",
            {},
        )
        self.checker = self._function(
            "Checker",
            "incident_check",
            "Alarms on overdue NIS2 incident reports",
            {"ALARM_TOPIC_ARN": alarm_topic.topic_arn},
        )
        self._grant_incidents(self.opener.role, ["dynamodb:Query", "dynamodb:PutItem"])
        self._grant_incidents(self.checker.role, ["dynamodb:Query", "dynamodb:UpdateItem"])
        alarm_topic.grant_publish(self.checker.role)
        nag.acknowledge_wildcard_actions(
            self.checker.role,
            "Publishing to a KMS-encrypted alarm topic needs GenerateDataKey variants on "
            "that topic's key only (granted by CDK's grant_publish).",
            ["kms:GenerateDataKey*"],
        )
        self._rules(event_bus, interval)
        self._alarm(alarm_topic)

    def _rules(self, event_bus: events.IEventBus | None, interval: cdk.Duration) -> None:
        self.finding_rule = events.Rule(
            self,
            "HighFindings",
            description="iot-remote-access: high-severity security findings open incidents",
            event_bus=event_bus,
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE],
                detail_type=[EVENT_DETAIL_TYPE],
                detail={"severity": ["high"]},
            ),
            targets=[targets.LambdaFunction(self.opener.function, retry_attempts=8)],
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="iot-remote-access: checks the incidents' NIS2 clocks",
            schedule=events.Schedule.rate(interval),
            targets=[targets.LambdaFunction(self.checker.function, retry_attempts=2)],
        )

    def _alarm(self, alarm_topic: sns.ITopic) -> None:
        self.failures_alarm = cloudwatch.Alarm(
            self,
            "Failures",
            metric=cloudwatch.MathExpression(
                expression="opener + checker",
                using_metrics={
                    "opener": self.opener.function.metric_errors(statistic="Sum"),
                    "checker": self.checker.function.metric_errors(statistic="Sum"),
                },
                period=cdk.Duration.minutes(15),
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="An incident could not be opened or its clocks not checked "
            "(see the functions' logs); NIS2 deadlines may pass unnoticed.",
        )
        self.failures_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))

    def _function(
        self, construct_id: str, package: str, description: str, extra: dict[str, str]
    ) -> LibraryFunction:
        function = LibraryFunction(
            self,
            construct_id,
            handler_package=package,
            shared_packages=["ledger", "incidents"],
            description=description,
            environment={**self.ledger.writer_environment(), **extra},
            timeout=cdk.Duration.minutes(1),
            # One at a time: the opener's duplicate check and the checker's alarms are
            # read-then-write; a second concurrent run gains nothing.
            reserved_concurrent_executions=1,
        )
        self.ledger.grant_append(function.role)
        return function

    def _grant_incidents(self, role: iam.IRole, actions: list[str]) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=actions,
                resources=[self.ledger.table.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {
                        "dynamodb:LeadingKeys": [self.ledger.ledger_id + INCIDENT_PARTITION_SUFFIX]
                    }
                },
            )
        )
